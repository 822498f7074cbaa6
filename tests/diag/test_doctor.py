"""``lora-gw doctor`` end to end: a private Mosquitto with a password file, an emulated radio, a real
state directory; driven through gateway.cli.main in-process and once as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.diag import doctor, radio, setup, system
from tests.diag.system_helpers import (
    CHECK_KEYS,
    NO_SYSTEMD,
    SYSTEM_CHECKS,
    blackholed_port,
    make_state,
    silent_server,
    write_config,
)
from tests.service import conftest as service_fixtures
from tests.service.conftest import free_port

PASSWORD = "Tr1cky pass:w@rd/%"
USERS = {"gateway": PASSWORD}
ROOT = Path(__file__).resolve().parents[2]

broker_factory = service_fixtures.broker_factory  # the private Mosquitto fixture


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No broker settings from the developer's environment, and no systemd (its verdicts vary by host:
    tests/diag/test_system.py covers them)."""
    for k in ("LORA_GW_MQTT_URL", "LORA_GW_MQTT_USERNAME", "LORA_GW_MQTT_PASSWORD", "LORA_GW_STATE_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(system, "default_host", lambda: NO_SYSTEMD)


def secrets_for(password: str) -> str:
    return f'[mqtt]\nusername = "gateway"\npassword = "{password}"\n'


def expected_names(conf: Path) -> list[str]:
    """The system checks in order, with the radio half's checks (whatever it returns) after spi_device."""
    cfg = setup.load(str(conf), emulate=True)
    return [*SYSTEM_CHECKS[:2], *(c.name for c in radio.radio_checks(cfg)), *SYSTEM_CHECKS[2:]]


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def by_name(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_all_green_on_a_healthy_emulated_setup(tmp_path, broker_factory, capsys):
    b = broker_factory(passwords=USERS)
    make_state(tmp_path / "state")
    conf = write_config(tmp_path, b.url, secrets=secrets_for(PASSWORD), radio='backend = "sx1276"')
    start = time.monotonic()
    code, doc = run_json(capsys, "doctor", "--config", str(conf), "--emulate", "--json")
    wall = time.monotonic() - start
    assert code == 0 and doc["ok"] is True, doc
    assert list(doc) == ["ok", "checks"]
    assert [c["name"] for c in doc["checks"]] == expected_names(conf)
    for c in doc["checks"]:
        assert list(c) == CHECK_KEYS and c["ok"] is not False and c["cause"] is None and c["fix"] is None
    checks = by_name(doc)
    nulls = {n for n, c in checks.items() if c["ok"] is None and n in SYSTEM_CHECKS}
    assert nulls == {"spi_device", "broker_tls", "clock_sync", "systemd_unit"}
    assert all(checks[n]["detail"] for n in nulls)  # the reason it does not apply
    assert "emulated" in checks["config"]["detail"]
    assert "with the configured user name and password" in checks["broker_auth"]["detail"]
    assert "ms (QoS 1, lora/gw-test/doctor/" in checks["broker_roundtrip"]["detail"]
    assert "1 verified" in checks["models"]["detail"]
    assert "0 frames waiting" in checks["outbox"]["detail"]
    assert wall < 10.0


def test_wrong_broker_password_fails_broker_auth_with_its_fix(tmp_path, broker_factory, capsys):
    b = broker_factory(passwords=USERS)
    make_state(tmp_path / "state")
    conf = write_config(tmp_path, b.url, secrets=secrets_for("not-the-password"))
    code, doc = run_json(capsys, "doctor", "--config", str(conf), "--json")
    checks = by_name(doc)
    assert code == 1 and doc["ok"] is False
    auth = checks["broker_auth"]
    assert auth["ok"] is False and "user name or password" in auth["cause"]
    assert "mosquitto_passwd" in auth["fix"] and "secrets file" in auth["fix"]
    assert checks["broker_reachable"]["ok"] is True
    assert checks["broker_roundtrip"]["ok"] is None  # follows from the login, not a second cause
    assert [n for n, c in checks.items() if c["ok"] is False] == ["broker_auth"]
    assert "not-the-password" not in json.dumps(doc)


def test_broker_comes_from_the_environment_as_for_lora_gw_run(tmp_path, broker_factory, capsys, monkeypatch):
    b = broker_factory(passwords=USERS)
    conf = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}", secrets=secrets_for("wrong"))
    monkeypatch.setenv("LORA_GW_MQTT_URL", b.url)  # replaces the whole broker, credentials too
    monkeypatch.setenv("LORA_GW_MQTT_USERNAME", "gateway")
    monkeypatch.setenv("LORA_GW_MQTT_PASSWORD", PASSWORD)
    code, doc = run_json(capsys, "diag", "mqtt", "--config", str(conf), "--json")
    checks = by_name(doc)
    assert code == 0, doc
    assert "LORA_GW_MQTT_URL" in checks["broker_reachable"]["detail"]
    assert checks["broker_auth"]["ok"] is True and checks["broker_roundtrip"]["ok"] is True


def test_anonymous_client_refused(tmp_path, broker_factory, capsys):
    b = broker_factory(passwords=USERS)
    conf = write_config(tmp_path, b.url)
    code, doc = run_json(capsys, "diag", "mqtt", "--config", str(conf), "--json")
    auth = by_name(doc)["broker_auth"]
    assert code == 1 and auth["ok"] is False and "without a login" in auth["cause"]


def test_doctor_on_a_dead_port_finishes_quickly(tmp_path, capsys):
    conf = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    start = time.monotonic()
    code, doc = run_json(capsys, "doctor", "--config", str(conf), "--json")
    assert time.monotonic() - start < 5.0
    checks = by_name(doc)
    r = checks["broker_reachable"]
    assert code == 1 and r["ok"] is False and "nothing accepts connections" in r["cause"]
    assert "systemctl start mosquitto" in r["fix"]
    assert [checks[n]["ok"] for n in ("broker_tls", "broker_auth", "broker_roundtrip")] == [None] * 3


def test_doctor_on_a_blackholed_port_and_a_silent_server_stays_well_under_20_s(tmp_path):
    with blackholed_port() as port:
        conf = write_config(tmp_path, f"mqtts://127.0.0.1:{port}")
        start = time.monotonic()
        res = doctor.run(str(conf))
        wall = time.monotonic() - start
    r = {c.name: c for c in res.report.checks}["broker_reachable"]
    assert r.ok is False and "no answer" in r.cause and "firewall" in r.cause
    assert 2.5 < wall < 8.0, wall  # one connect timeout (~3 s), nothing more
    with silent_server() as port:
        conf = write_config(tmp_path, f"mqtt://127.0.0.1:{port}")
        start = time.monotonic()
        res = doctor.run(str(conf))
        wall = time.monotonic() - start
    auth = {c.name: c for c in res.report.checks}["broker_auth"]
    assert auth.ok is False and "no MQTT answer" in auth.cause
    assert wall < 12.0, wall


def test_config_error_is_the_config_check_failing_with_exit_2(tmp_path, capsys):
    conf = tmp_path / "gateway.toml"
    conf.write_text("[radio]\nsf = 13\n")
    code, doc = run_json(capsys, "doctor", "--config", str(conf), "--json")
    assert code == 2 and doc["ok"] is False
    first = doc["checks"][0]
    assert first["name"] == "config" and first["ok"] is False
    assert first["cause"] == "radio.sf: 13 is outside 6..12"
    assert f"lora-gw config check {conf}" in first["fix"]
    assert [c["name"] for c in doc["checks"]] == ["config", "clock_sync", "systemd_unit"]
    code = main(["diag", "mqtt", "--config", str(tmp_path / "missing.toml")])
    out = capsys.readouterr().out
    assert code == 2 and "does not exist" in out


def test_human_output_is_an_aligned_checklist_without_colour_off_a_terminal(tmp_path, broker_factory, capsys):
    b = broker_factory(passwords=USERS)
    conf = write_config(tmp_path, b.url, secrets=secrets_for("wrong"))
    code = main(["doctor", "--config", str(conf)])
    out = capsys.readouterr().out
    assert code == 1 and "\033[" not in out
    rows = [line for line in out.splitlines() if line[:4].strip() in ("ok", "FAIL", "n/a")]
    assert len(rows) == len(expected_names(conf))
    assert len({line.index(line.split()[2]) for line in rows if len(line.split()) > 2}) == 1  # one column
    assert "cause: the broker refused the user name or password" in out
    assert "checks," in out.splitlines()[-1] and PASSWORD not in out and "wrong" not in out


def test_doctor_as_a_subprocess(tmp_path, broker_factory):
    b = broker_factory(passwords=USERS)
    make_state(tmp_path / "state")
    conf = write_config(tmp_path, b.url, secrets=secrets_for(PASSWORD))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_GW_")}
    start = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "doctor", "--config", str(conf), "--emulate", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
        check=False,
    )
    wall = time.monotonic() - start
    doc = json.loads(p.stdout)
    checks = by_name(doc)
    assert wall < 10.0
    # clock_sync and systemd_unit are this machine's own: anything but a crash is acceptable here
    mine = {
        n: c["ok"]
        for n, c in checks.items()
        if n in SYSTEM_CHECKS and n not in ("clock_sync", "systemd_unit")
    }
    assert mine == {
        "config": True,
        "spi_device": None,
        "broker_reachable": True,
        "broker_tls": None,
        "broker_auth": True,
        "broker_roundtrip": True,
        "outbox": True,
        "state_access": True,
        "models": True,
    }
    assert p.returncode == (0 if doc["ok"] else 1)
    assert PASSWORD not in p.stdout + p.stderr


def test_a_flipped_byte_in_a_model_file_fails_models(tmp_path, broker_factory, capsys):
    b = broker_factory()
    state = make_state(tmp_path / "state")
    weights = next((state / "models").glob("m*-v*.npz"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x80
    weights.write_bytes(bytes(data))
    code, doc = run_json(capsys, "doctor", "--config", str(write_config(tmp_path, b.url)), "--json")
    checks = by_name(doc)
    assert code == 1 and [n for n, c in checks.items() if c["ok"] is False] == ["models"]
    assert weights.name in checks["models"]["cause"] and "model install" in checks["models"]["fix"]


def test_global_state_dir_option_is_the_one_checked(tmp_path, broker_factory, capsys):
    b = broker_factory()
    make_state(tmp_path / "state")
    elsewhere = tmp_path / "elsewhere"
    conf = write_config(tmp_path, b.url)
    code, doc = run_json(capsys, "--state-dir", str(elsewhere), "doctor", "--config", str(conf), "--json")
    outbox = by_name(doc)["outbox"]
    assert code == 1 and outbox["ok"] is False and str(elsewhere / "gateway.db") in outbox["cause"]
    assert not elsewhere.exists()  # looked at, never created


def test_state_open_to_group_or_others_fails_state_access_with_the_chmod(tmp_path, broker_factory, capsys):
    b = broker_factory()
    state = make_state(tmp_path / "state")
    conf = write_config(tmp_path, b.url)
    state.chmod(0o755)
    (state / "gateway.db").chmod(0o644)  # ours: lora-gw run would close it, but it is open right now
    code, doc = run_json(capsys, "doctor", "--config", str(conf), "--json")
    check = by_name(doc)["state_access"]
    assert code == 1 and [n for n, c in by_name(doc).items() if c["ok"] is False] == ["state_access"]
    # (doctor's read-only look at the outbox made a -wal with the database's mode: it is listed too)
    assert check["cause"].startswith(f"{state} (mode 0755), {state / 'gateway.db'} (mode 0644), ")
    assert check["cause"].endswith(" are readable or writable by group or others and hold node keys")
    assert check["fix"].startswith(f"run chmod 700 {state} && chmod 600 {state / 'gateway.db'} && ")
    assert oct(state.stat().st_mode & 0o777) == "0o755"  # doctor looks, it never changes anything
