"""``lora-gw diag bundle``: what goes in, and that no key or password does, in any spelling."""

from __future__ import annotations

import base64
import json
import os
import stat
import tarfile
from urllib.parse import quote

import pytest

from gateway.cli.main import main
from gateway.diag import bundle, system
from gateway.frames.registry import NodeRegistry
from gateway.sinks.url import BrokerUrl
from tests.diag.system_helpers import NO_SYSTEMD, make_state, write_config
from tests.service import conftest as service_fixtures

PASSWORD = "Pl4nted-Secret+/="  # survives URL escaping only as %2B%2F%3D: that spelling is checked too
URL_USER, URL_PASSWORD = "urluser7", "Url-Pass-93f1"
SECRETS_KEY = "00112233445566778899aabbccddeeff"
ENV_URL_PASSWORD = "env-url-pw-7d2c"

broker_factory = service_fixtures.broker_factory  # the private Mosquitto fixture


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    # every LORA_GW_* variable goes into the bundle: none from the shell that runs the tests
    # (scripts/test's LORA_GW_TEST_WORKERS showed up in config/environment.json)
    for k in [k for k in os.environ if k.startswith("LORA_GW_")]:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(system, "default_host", lambda: NO_SYSTEMD)


def spellings(secret: str) -> list[bytes]:
    raw = secret.encode()
    out = [raw, raw.upper(), raw.lower(), base64.b64encode(raw), base64.b64encode(raw).rstrip(b"=")]
    if all(c in "0123456789abcdefABCDEF" for c in secret) and len(secret) % 2 == 0:
        key = bytes.fromhex(secret)
        out += [key.hex().encode(), key.hex().upper().encode(), key, base64.b64encode(key)]
        out += [base64.b64encode(key).rstrip(b"="), base64.urlsafe_b64encode(key).rstrip(b"=")]
    out.append(quote(secret, safe="").encode())
    return [s for s in out if len(s) >= 6]


def members(path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_bundle_holds_no_secret_in_any_spelling(tmp_path, broker_factory, capsys, monkeypatch):
    b = broker_factory(passwords={"gateway": PASSWORD})
    # the environment overrides the broker as for lora-gw run; its URL's password is overridden in turn
    monkeypatch.setenv("LORA_GW_MQTT_URL", f"mqtt://gateway:{ENV_URL_PASSWORD}@127.0.0.1:{b.port}")
    monkeypatch.setenv("LORA_GW_MQTT_PASSWORD", PASSWORD)
    state = make_state(tmp_path / "state")
    conf = write_config(
        tmp_path,
        f"mqtt://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{b.port}",
        secrets=f'[mqtt]\nusername = "gateway"\npassword = "{PASSWORD}"\n'
        f'[node_keys]\n"0x2a" = "{SECRETS_KEY}"\n',
    )
    assert main(["--state-dir", str(state), "nodes", "add", "0x51", "--generate-key"]) == 0
    with NodeRegistry(state / "gateway.db") as reg:
        generated = reg.get(0x51).key.hex()
    # a secret quoted somewhere the redaction by name cannot know about: the journal
    journal = (
        f"ERROR login mqtt://gateway:{quote(PASSWORD, safe='')}@h:1\n"
        f"DEBUG {BrokerUrl('h', 1, False, 'gateway', PASSWORD)!r}\n"
        f"DEBUG key {generated} {SECRETS_KEY.upper()}\n"
    )
    leaky = system.Host(run=lambda argv, t: system.Output(0, journal, ""), systemd=lambda: False)
    out = tmp_path / "support.tar.gz"
    res = bundle.build(out, str(conf), emulate=True, host=leaky)
    assert res.exit_code == 0, res.doctor_summary  # the secrets file's password is the one the broker has
    files = members(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secrets = [PASSWORD, URL_USER, URL_PASSWORD, ENV_URL_PASSWORD, SECRETS_KEY, generated]
    for name, data in files.items():
        for secret in secrets:
            for form in spellings(secret):
                assert form not in data, f"{secret!r} as {form!r} in {name}"
    # … and the bundle is still useful
    assert {
        "README.txt",
        "doctor.json",
        "config/gateway.json",
        "config/secrets-file.json",
        "config/effective.json",
        "config/environment.json",
        "versions.json",
        "stats.json",
        "journal.txt",
    } <= set(files)
    doctor = json.loads(files["doctor.json"])
    assert doctor["ok"] is True and {c["name"] for c in doctor["checks"]} >= {"broker_auth", "models"}
    conf_doc = json.loads(files["config/gateway.json"])["config"]
    assert conf_doc["mqtt"]["url"] == f"mqtt://<redacted>@127.0.0.1:{b.port}"
    assert conf_doc["radio"]["backend"] == "emulator"
    structure = json.loads(files["config/secrets-file.json"])["structure"]
    assert structure == {
        "mqtt": {"username": "<redacted>", "password": "<redacted>"},
        "node_keys": {"0x2a": "<redacted>"},
    }
    effective = json.loads(files["config/effective.json"])
    assert effective["mqtt"]["broker"]["password"] == "<redacted>" and effective["gateway"]["id"] == "gw-test"
    environment = json.loads(files["config/environment.json"])
    assert environment == {
        "LORA_GW_MQTT_URL": f"mqtt://<redacted>@127.0.0.1:{b.port}",
        "LORA_GW_MQTT_PASSWORD": "<redacted>",
    }
    versions = json.loads(files["versions.json"])
    assert versions["lora_gw"] and versions["python"] and versions["kernel"]["release"]
    assert versions["os_release"].get("ID")  # from /etc/os-release
    stats = json.loads(files["stats.json"])
    assert stats["outbox"]["depth"] == 0 and stats["outbox"]["nodes"] == 1 and len(stats["models"]) == 1
    assert b"ERROR login mqtt://<redacted>@h:1" in files["journal.txt"]
    dump = json.loads(files["radio/registers.json"])  # the emulated chip, as `diag regs --json` shows it
    assert dump["lora_mode"] is True and any(r["name"] == "VERSION" for r in dump["registers"])
    capsys.readouterr()


def test_bundle_cli_with_a_register_dump_and_a_bad_config(tmp_path, broker_factory, monkeypatch, capsys):
    b = broker_factory()
    conf = write_config(tmp_path, b.url)
    make_state(tmp_path / "state")
    out = tmp_path / "b.tar.gz"
    code = main(["diag", "bundle", "--out", str(out), "--config", str(conf), "--emulate", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["doctor_ok"] is True and "radio/registers.json" in summary["members"]
    assert json.loads(members(out)["radio/registers.json"])["differences"] == 0
    # a config that does not load still gives a bundle (that is when support needs one), exit 2
    conf.write_text(conf.read_text().replace('backend = "emulator"', 'backend = "emulator"\nsf = 99'))
    code = main(["diag", "bundle", "--out", str(out), "--config", str(conf)])
    text = capsys.readouterr().out
    assert code == 2 and "wrote" in text and "1 failed" in text
    doc = json.loads(members(out)["doctor.json"])
    assert doc["checks"][0]["cause"] == "radio.sf: 99 is outside 6..12"
    assert json.loads(members(out)["config/gateway.json"])["config"]["radio"]["sf"] == 99


def test_bundle_to_an_unwritable_place_is_a_usage_error(tmp_path, capsys):
    conf = write_config(tmp_path, "mqtt://127.0.0.1:1")
    (tmp_path / "file").write_text("")
    code = main(["diag", "bundle", "--out", str(tmp_path / "file" / "b.tar.gz"), "--config", str(conf)])
    assert code == 2 and "cannot write" in capsys.readouterr().err


def test_redaction_by_name_and_by_value():
    from gateway.diag.redact import Scrubber, redact_tree, secret_values

    tree = {
        "mqtt": {"url": "mqtts://u:p%40ss@h:8883", "username": "u", "password": "pw1", "key_file": "/k.pem"},
        "node_keys": {"0x2a": "ab" * 16},
        "radio": {"sf": 7},
    }
    red = redact_tree(tree)
    assert red["mqtt"] == {
        "url": "mqtts://<redacted>@h:8883", "username": "<redacted>", "password": "<redacted>",
        "key_file": "/k.pem",
    }  # fmt: skip
    assert red["node_keys"] == {"0x2a": "<redacted>"} and red["radio"] == {"sf": 7}
    assert sorted(secret_values(tree)) == sorted(["p@ss", "pw1", "ab" * 16])  # user names: by name only
    scrub = Scrubber(["p@ss", "ab" * 16])
    key_b64 = base64.b64encode(bytes.fromhex("ab" * 16))
    text = b"login p%40ss / p@ss; key " + ("AB" * 16).encode() + b" " + key_b64 + b" via ftp://x:y@host"
    assert (
        scrub(text) == b"login <redacted> / <redacted>; key <redacted> <redacted> via ftp://<redacted>@host"
    )
