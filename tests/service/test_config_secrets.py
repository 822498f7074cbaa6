"""No error message ever shows the MQTT password (issue 10, item 4): a planted password per malformed
config, secrets file or environment value, and every message checked for it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main as cli
from gateway.errors import ConfigError
from gateway.service.config import load_config, parse_config
from gateway.sinks.url import redact_url

PW = "S3cretPW"


def _message(
    data: dict[str, Any], secrets: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, secrets, env or {})
    return exc.value.message


def _private_secrets(tmp_path: Path, text: str) -> Path:
    s = tmp_path / "secrets.toml"
    s.write_text(text)
    os.chmod(s, 0o600)
    p = tmp_path / "gateway.toml"
    p.write_text('[gateway]\nid = "gw"\nsecrets_file = "secrets.toml"\n')
    return p


# --- the three messages of the issue, reproduced ---


def test_url_with_a_path_does_not_show_the_password():
    msg = _message({"mqtt": {"url": f"mqtt://gw:{PW}@broker.lan/lora"}})
    assert msg.startswith("mqtt.url: ") and "has a path" in msg and "broker.lan" in msg
    assert PW not in msg


def test_environment_url_with_a_bad_port_does_not_show_the_password():
    msg = _message({}, env={"LORA_GW_MQTT_URL": f"mqtt://gw:{PW}@broker.lan:18B3"})
    assert msg.startswith("LORA_GW_MQTT_URL: ") and "port" in msg and "broker.lan" in msg
    assert PW not in msg


def test_secret_of_the_wrong_type_is_named_by_its_type_only(tmp_path, capsys):
    config = _private_secrets(tmp_path, '[mqtt]\nusername = "gw"\npassword = 12345\n')
    with pytest.raises(ConfigError) as exc:
        load_config(config, env={})
    assert exc.value.message.startswith("secrets.mqtt.password: ")
    assert "12345" not in exc.value.message and "an integer" in exc.value.message
    # and as the operator sees it
    assert cli.main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lora-gw: secrets.mqtt.password: ") and "12345" not in err and err.count("\n") == 1


# --- the sweep ---

URLS = [  # (URL with the planted password, fragments of the password that must not appear)
    (f"mqtt://gw:{PW}@h/x", [PW]),
    (f"mqtt://gw:{PW}@h?x=1", [PW]),
    (f"mqtt://gw:{PW}@h:abc", [PW]),
    (f"mqtt://gw:{PW}@h:99999", [PW]),
    (f"mqtt://gw:{PW}@", [PW]),
    (f"mqtt://gw:{PW}@:1883", [PW]),
    (f"http://gw:{PW}@h", [PW]),
    (f"gw:{PW}@h:1883", [PW]),  # no scheme
    ("mqtt://gw:S3c/retPW@h", ["S3c", "retPW"]),  # unescaped / in the password
    ("mqtt://gw:S3c#retPW@h", ["S3c", "retPW"]),  # unescaped #
    ("mqtt://gw:S3c?retPW@h", ["S3c", "retPW"]),  # unescaped ?
    ("mqtt://gw:S3c@retPW@h/x", ["S3c", "retPW"]),  # unescaped @
    ("mqtt://gw:S3cret%2FPW@h/x", ["S3cret", "%2FPW"]),  # escaped, then a path
    ("mqtt://gw:S3cret PW@h/x", ["S3cret", "PW@"]),  # a space
    ("mqtt://gw:S3cret\tPW@h", ["S3cret", "PW@"]),  # a tab (urlsplit would drop it silently)
    (f" mqtts://gw:{PW}@h:8883/ ", None),  # valid: nothing to report
]

CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, str], str, list[str]]] = []
for i, (url, forbidden) in enumerate(URLS):
    if forbidden is None:
        continue
    CASES.append((f"mqtt.url-{i}", {"mqtt": {"url": url}}, None, {}, "mqtt.url", forbidden))
    CASES.append((f"env-url-{i}", {}, None, {"LORA_GW_MQTT_URL": url}, "LORA_GW_MQTT_URL", forbidden))
CASES += [
    ("url-array", {"mqtt": {"url": [f"mqtt://gw:{PW}@h"]}}, None, {}, "mqtt.url", [PW]),
    ("url-table", {"mqtt": {"url": {"u": f"mqtt://gw:{PW}@h"}}}, None, {}, "mqtt.url", [PW]),
    ("password-int", {"mqtt": {"username": "gw", "password": 12345}}, None, {}, "mqtt.password", ["12345"]),
    ("password-array", {"mqtt": {"password": [PW]}}, None, {}, "mqtt.password", [PW]),
    ("username-int", {"mqtt": {"username": 424242}}, None, {}, "mqtt.username", ["424242"]),
    ("secret-int", {}, {"mqtt": {"password": 12345}}, {}, "secrets.mqtt.password", ["12345"]),
    ("secret-float", {}, {"mqtt": {"password": 1.5e3}}, {}, "secrets.mqtt.password", ["1500", "1.5"]),
    ("secret-bool", {}, {"mqtt": {"password": True}}, {}, "secrets.mqtt.password", ["True", "true"]),
    ("secret-array", {}, {"mqtt": {"password": [PW]}}, {}, "secrets.mqtt.password", [PW]),
    ("secret-table", {}, {"mqtt": {"password": {"v": PW}}}, {}, "secrets.mqtt.password", [PW]),
    ("secret-user-int", {}, {"mqtt": {"username": 424242}}, {}, "secrets.mqtt.username", ["424242"]),
    ("secret-unknown", {}, {"mqtt": {"pasword": PW}}, {}, "secrets.mqtt.pasword", [PW]),
    ("secret-no-user", {}, {"mqtt": {"password": PW}}, {}, "mqtt.password", [PW]),
    ("env-no-user", {}, None, {"LORA_GW_MQTT_PASSWORD": PW}, "mqtt.password", [PW]),
    ("url-in-int", {"mqtt": {"keepalive_s": f"mqtt://gw:{PW}@h"}}, None, {}, "mqtt.keepalive_s", [PW]),
    ("url-in-float", {"mqtt": {"ack_timeout_s": f"mqtt://gw:{PW}@h"}}, None, {}, "mqtt.ack_timeout_s", [PW]),
    ("url-in-choice", {"mqtt": {"protocol": f"mqtt://gw:{PW}@h"}}, None, {}, "mqtt.protocol", [PW]),
    ("url-in-bool", {"mqtt": {"tls_insecure": f"mqtt://gw:{PW}@h"}}, None, {}, "mqtt.tls_insecure", [PW]),
    ("url-in-prefix", {"mqtt": {"topic_prefix": f"mqtt://gw:{PW}@h/#"}}, None, {}, "mqtt.topic_prefix", [PW]),
    ("url-in-id", {"gateway": {"id": f"mqtt://gw:{PW}@h/"}}, None, {}, "gateway.id", [PW]),
    ("url-in-list", {"nodes": {"gap_filling_nodes": [f"mqtt://gw:{PW}@h"]}}, None, {},
     "nodes.gap_filling_nodes", [PW]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "secrets", "env", "key", "forbidden"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_no_error_message_shows_a_planted_password(data, secrets, env, key, forbidden):
    msg = _message(data, secrets, env)
    assert msg.startswith(f"{key}: "), msg
    assert "\n" not in msg
    for fragment in forbidden:
        assert fragment not in msg, msg


def test_the_valid_url_of_the_sweep_parses():
    cfg = parse_config({"mqtt": {"url": f" mqtts://gw:{PW}@h:8883/ "}}, env={})
    assert (cfg.mqtt.username, cfg.mqtt.password, cfg.mqtt.broker.port) == ("gw", PW, 8883)


@pytest.mark.parametrize(
    "text",
    [f"password = {PW}", f'password = "{PW}', f'[mqtt]\npassword = "{PW}" x', f'pass"{PW}" = 1'],
)
def test_a_broken_secrets_file_is_reported_without_its_content(tmp_path, text):
    with pytest.raises(ConfigError) as exc:
        load_config(_private_secrets(tmp_path, text), env={})
    assert exc.value.message.startswith("gateway.secrets_file: ") and "not valid TOML" in exc.value.message
    assert PW not in exc.value.message


def test_redact_url():
    assert redact_url(f"mqtt://gw:{PW}@h:1883") == "mqtt://<redacted>@h:1883"
    assert redact_url("mqtts://gw@h") == "mqtts://<redacted>@h"
    assert redact_url("mqtt://h:1883") == "mqtt://h:1883"
    assert redact_url("mqtt://gw:a b/c@d@h") == "mqtt://<redacted>@h"  # a whole URL: up to its last @
    assert (
        redact_url(f"login mqtt://gw:{PW}@h:1 failed; mail x@y")
        == "login mqtt://<redacted>@h:1 failed; mail x@y"
    )
    assert (
        redact_url(f"a mqtt://u:{PW}@h and ftp://v:S3c/x@g") == "a mqtt://<redacted>@h and ftp://<redacted>@g"
    )


def test_a_config_printed_whole_shows_no_secret(tmp_path):
    config = _private_secrets(
        tmp_path,
        f'[mqtt]\nusername = "gw"\npassword = "{PW}"\n'
        '[node_keys]\n"0x2a" = "000102030405060708090a0b0c0d0e0f"\n',
    )
    cfg = load_config(config, env={})
    assert cfg.mqtt.password == PW and cfg.node_keys[0x2A] == bytes(range(16))
    text = repr(cfg)
    assert PW not in text and "node_keys" not in text and repr(bytes(range(16))) not in text
    assert "username='gw'" in text  # the rest is still there to debug with
