from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.service.config import load_config, parse_config
from gateway.sinks.url import parse_broker_url

REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_documents_every_option():
    cfg = load_config(REPO / "config" / "gateway.toml", env={})
    assert cfg.radio.backend in ("sx1276", "emulator")
    assert cfg.nodes.gap_filling is False
    text = (REPO / "config" / "gateway.toml").read_text()
    # every field of every section appears in the example, so the file documents them all
    import dataclasses

    for section in ("gateway", "radio", "mqtt", "outbox", "logging", "nodes", "state"):
        for f in dataclasses.fields(getattr(cfg, section)):
            if f.name in ("broker", "emulator", "credential_origins"):  # not options
                continue
            assert f"{f.name} =" in text or f"# {f.name} =" in text, f"{section}.{f.name} undocumented"


def test_gap_filling_per_node():
    cfg = parse_config({"nodes": {"gap_filling_nodes": ["0x2a", 7]}}, env={})
    assert cfg.nodes.gap_filling_for(42) and cfg.nodes.gap_filling_for(7) and not cfg.nodes.gap_filling_for(8)


def test_defaults_without_any_table():
    cfg = parse_config({"gateway": {"id": "gw1"}}, env={})
    assert cfg.radio.sf == 7 and cfg.radio.bw_hz == 125_000
    assert cfg.mqtt.protocol == "5" and cfg.mqtt.broker.port == 1883
    assert cfg.outbox.synchronous == "normal"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"radio": {"sf": 13}}, "radio.sf: 13 is outside 6..12"),
        ({"radio": {"sf": "7"}}, "radio.sf: '7' is not an integer"),
        ({"radio": {"bw_hz": 100000}}, "radio.bw_hz: 100000 is not one of"),
        ({"radio": {"cr": "4/9"}}, "radio.cr: '4/9' is not one of 4/5, 4/6, 4/7, 4/8"),
        ({"radio": {"frequency_hz": 915_000_000}}, "radio.frequency_hz: 915000000 is outside the EU868 band"),
        ({"radio": {"backend": "lora"}}, "radio.backend: 'lora' is not one of sx1276, emulator"),
        ({"radio": {"duty_cycle_percent": 5.0}}, "radio.duty_cycle_percent: 5.0 is outside 0..1"),
        ({"radio": {"emulator": {"nodes": 999}}}, "radio.emulator.nodes: 999 is outside 0..250"),
        ({"radio": {"sync_wrod": 1}}, "radio.sync_wrod: unknown option"),
        ({"radio": {"tx_power_dbm": 18}}, "radio.tx_power_dbm: 18 is not 2..17 or 20"),
        ({"mqtt": {"url": "http://x"}}, "mqtt.url: scheme 'http' is not mqtt or mqtts"),
        ({"mqtt": {"protocol": "4"}}, "mqtt.protocol: '4' is not one of 5, 3.1.1"),
        ({"mqtt": {"ca_file": "/nonexistent/ca.pem"}}, "mqtt.ca_file: /nonexistent/ca.pem does not exist"),
        ({"mqtt": {"topic_prefix": "a/#"}}, "mqtt.topic_prefix: 'a/#' must be"),
        ({"outbox": {"synchronous": "off"}}, "outbox.synchronous: 'off' is not one of normal, full"),
        ({"outbox": {"commit_frames": 0}}, "outbox.commit_frames: 0 is outside 1..100000"),
        ({"logging": {"level": "loud"}}, "logging.level: 'loud' is not one of"),
        ({"nodes": {"gap_filling": "yes"}}, "nodes.gap_filling: 'yes' is not true or false"),
        ({"nodes": {"gap_filling_nodes": ["x"]}}, "nodes.gap_filling_nodes: 'x' is not a node id"),
        ({"gateway": {"id": "a/b"}}, "gateway.id: 'a/b' must not contain"),
        ({"radio": 5}, "radio: must be a table"),
        ({"bogus": {}}, "bogus: unknown option"),
    ],
)
def test_bad_values_get_one_line_errors_naming_the_key(data, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(data, env={})
    assert message in exc.value.message
    assert exc.value.message.startswith(message.split(":")[0] + ":")
    assert "\n" not in exc.value.message
    assert exc.value.reason == "config"


def test_broker_url_forms():
    u = parse_broker_url("mqtt://alice:s%40cret@broker.lan:1884")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("broker.lan", 1884, False, "alice", "s@cret")
    assert u.redacted() == "mqtt://alice@broker.lan:1884"
    assert parse_broker_url("mqtts://h").port == 8883 and parse_broker_url("mqtts://h").tls
    assert parse_broker_url("mqtt://h").port == 1883
    assert parse_broker_url("mqtt://bob@h").username == "bob"
    assert parse_broker_url("mqtt://[::1]:1883").host == "::1"
    for bad, msg in [
        ("h:1883", "is not a broker URL"),
        ("mqtt://h:99999", "port"),
        ("mqtt://h:0", "port 0 is outside 1..65535"),
        ("mqtt://h/x", "has a path"),
        ("mqtt://", "has no host"),
        ("mqtt://h:abc", "port"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_broker_url(bad, "--broker")


def _write(tmp_path: Path, text: str, secrets: str | None = None, mode: int = 0o600) -> Path:
    if secrets is not None:
        s = tmp_path / "secrets.toml"
        s.write_text(secrets)
        os.chmod(s, mode)
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    return p


def test_secrets_file_and_environment_layering(tmp_path):
    p = _write(
        tmp_path,
        '[gateway]\nid = "gw"\nsecrets_file = "secrets.toml"\n[mqtt]\nurl = "mqtt://u0:p0@h:1883"\n',
        secrets='[mqtt]\nusername = "u1"\npassword = "p1"\n'
        '[node_keys]\n"0x2a" = "000102030405060708090a0b0c0d0e0f"\n',
    )
    cfg = load_config(p, env={})
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("u1", "p1")
    assert cfg.node_keys == {42: bytes(range(16))}
    cfg = load_config(p, env={"LORA_GW_MQTT_URL": "mqtts://u2:p2@other:9000"})
    assert (cfg.mqtt.broker.host, cfg.mqtt.broker.port, cfg.mqtt.broker.tls) == ("other", 9000, True)
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("u2", "p2")
    cfg = load_config(p, env={"LORA_GW_MQTT_USERNAME": "u3", "LORA_GW_MQTT_PASSWORD": "p3"})
    assert (cfg.mqtt.broker.host, cfg.mqtt.username, cfg.mqtt.password) == ("h", "u3", "p3")


def test_secrets_file_readable_by_others_is_refused(tmp_path):
    p = _write(
        tmp_path, '[gateway]\nsecrets_file = "secrets.toml"\n', secrets='[mqtt]\npassword = "x"\n', mode=0o644
    )
    with pytest.raises(
        ConfigError, match=r"gateway.secrets_file: .* readable by group or others \(mode 0644\)"
    ):
        load_config(p, env={})


def test_bad_node_key_and_bad_toml(tmp_path):
    p = _write(tmp_path, '[gateway]\nsecrets_file = "secrets.toml"\n', secrets='[node_keys]\n"7" = "abcd"\n')
    with pytest.raises(ConfigError, match=r"secrets.node_keys.7: the key must be 32 hex digits"):
        load_config(p, env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[radio\nsf=7")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", env={})


def test_mqtt_section_and_sink_settings_agree():
    """The [mqtt] section's defaults are the sink's defaults, and every sink setting is configurable."""
    import dataclasses

    from gateway.service.app import mqtt_settings
    from gateway.service.config import MqttSection
    from gateway.sinks.mqtt import MqttSettings

    section = {f.name: f for f in dataclasses.fields(MqttSection)}
    for f in dataclasses.fields(MqttSettings):
        if f.name in ("client_id", "status_topic"):
            continue  # derived from the gateway id and topic prefix
        assert f.name in section, f"mqtt.{f.name} cannot be configured"
        if f.default is not dataclasses.MISSING:
            assert section[f.name].default == f.default, f"mqtt.{f.name} default differs from the sink's"
    cfg = load_config(REPO / "config" / "gateway.toml", env={})
    s = mqtt_settings(cfg)
    assert s.status_topic == f"lora/{cfg.gateway.id}/status" and s.client_id == f"lora-gw-{cfg.gateway.id}"
    assert s.connect_timeout_s == cfg.mqtt.connect_timeout_s and s.broker == cfg.mqtt.broker
