"""TLS honesty: what the logs and ``config check`` say about the broker connection is what it really is.

``tls_insecure`` warns at every connect, TLS shows as ``mqtts://`` even for ``mqtt://`` with a CA file, and
credentials sent in plaintext to another machine are flagged at start. The password is never printed.
Connections are to private Mosquittos on 127.0.0.1; 192.0.2.1 (TEST-NET-1) is only ever named, never dialled.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pytest

from gateway.cli.config import check
from gateway.sinks.mqtt import MqttSettings, MqttSink
from gateway.sinks.url import parse_broker_url

from .test_tls import make_pki

SECRET = "S3cretPW"


def _tls_broker(tmp_path: Path, broker_factory):
    """A Mosquitto whose certificate names the IP 127.0.0.1 only (so "localhost" fails the host check)."""
    pki = make_pki(tmp_path)
    b = broker_factory(
        extra=(f"cafile {pki['ca']}", f"certfile {pki['server']}", f"keyfile {pki['server_key']}")
    )
    return pki, b


def _sink(url: str, **kw) -> MqttSink:
    sink = MqttSink(
        MqttSettings(
            broker=parse_broker_url(url),
            client_id="tls-honesty",
            status_topic="lora/gw/status",
            reconnect_min_s=0.2,
            reconnect_max_s=0.2,
            **kw,
        )
    )
    sink.start()
    return sink


def _drive(sink: MqttSink, until, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if until():
            return True
        sink.wait(0.02)
        sink.poll()
        sink.check_health()
    return until()


def _warnings(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_tls_insecure_warns_at_every_connect(tmp_path, broker_factory, caplog):
    caplog.set_level(logging.INFO, logger="gateway.sinks.mqtt")
    pki, b = _tls_broker(tmp_path, broker_factory)
    url = f"mqtts://localhost:{b.port}"
    strict = _sink(url, ca_file=pki["ca"])  # control: the certificate names 127.0.0.1, not localhost
    assert not _drive(strict, lambda: strict.connected, timeout_s=1.5)
    strict.stop()
    sink = _sink(url, ca_file=pki["ca"], tls_insecure=True)
    try:
        assert _drive(sink, lambda: sink.connected)
        b.stop()
        assert _drive(sink, lambda: not sink.connected)
        b.start()
        assert _drive(sink, lambda: sink.stats.connects == 2)
    finally:
        sink.stop()
    connects = _warnings(caplog, "connected to")
    assert len(connects) == 2
    assert all(f"mqtts://localhost:{b.port}" in m and "tls_insecure" in m for m in connects)
    assert len(_warnings(caplog, "mqtt.tls_insecure = true: the broker's certificate is not checked")) == 1


def test_mqtt_url_with_a_ca_file_is_logged_as_mqtts(tmp_path, broker_factory, caplog):
    caplog.set_level(logging.INFO, logger="gateway.sinks.mqtt")
    pki, b = _tls_broker(tmp_path, broker_factory)
    sink = _sink(f"mqtt://127.0.0.1:{b.port}", ca_file=pki["ca"])  # TLS, because of the CA file
    try:
        assert _drive(sink, lambda: sink.connected)
    finally:
        sink.stop()
    lines = [r.getMessage() for r in caplog.records if "connected to" in r.getMessage()]
    assert lines == [f"mqtt: connected to mqtts://127.0.0.1:{b.port} (Success)"]
    assert not _warnings(caplog, "")  # verified TLS: nothing to warn about


@pytest.mark.parametrize(
    ("url", "ca", "warned"),
    [
        (f"mqtt://gw:{SECRET}@192.0.2.1:1883", False, True),
        ("mqtt://gw@192.0.2.1:1883", False, True),
        (f"mqtt://gw:{SECRET}@broker.lan", False, True),  # a name is not known to stay on this machine
        (f"mqtt://gw:{SECRET}@127.0.0.1:1883", False, False),
        (f"mqtt://gw:{SECRET}@[::1]:1883", False, False),
        (f"mqtt://gw:{SECRET}@localhost", False, False),
        (f"mqtts://gw:{SECRET}@192.0.2.1", False, False),
        (f"mqtt://gw:{SECRET}@192.0.2.1:8883", True, False),  # TLS through the CA file
        ("mqtt://192.0.2.1:1883", False, False),  # no credentials
    ],
)
def test_plaintext_credentials_to_another_machine_warn_at_start(tmp_path, caplog, url, ca, warned):
    """start() only builds the client (the first connect is in ``wait``): nothing is sent anywhere."""
    caplog.set_level(logging.INFO, logger="gateway.sinks.mqtt")
    ca_file = make_pki(tmp_path)["ca"] if ca else None
    settings = MqttSettings(broker=parse_broker_url(url), client_id="p", status_topic="s", ca_file=ca_file)
    sink = MqttSink(settings)
    sink.start()
    sink.stop()
    assert bool(_warnings(caplog, "unencrypted")) == warned
    assert SECRET not in caplog.text


def _check(tmp_path: Path, monkeypatch, capsys, mqtt: str, as_json: bool = True):
    for var in ("LORA_GW_MQTT_URL", "LORA_GW_MQTT_USERNAME", "LORA_GW_MQTT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    conf = tmp_path / "gateway.toml"
    conf.write_text(f'[gateway]\nid = "gw"\n[mqtt]\n{mqtt}\n')
    assert check(argparse.Namespace(path=str(conf), json=as_json)) == 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    return json.loads(out.out) if as_json else out.out


def test_config_check_shows_tls_insecure(tmp_path, monkeypatch, capsys):
    doc = _check(tmp_path, monkeypatch, capsys, 'url = "mqtts://127.0.0.1"\ntls_insecure = true')
    assert doc["tls_insecure"] is True and "NOT checked" in doc["tls"]
    assert [w for w in doc["warnings"] if w.startswith("mqtt.tls_insecure = true: ")]
    insecure = 'url = "mqtts://127.0.0.1"\ntls_insecure = true'
    text = _check(tmp_path, monkeypatch, capsys, insecure, as_json=False)
    assert "  warning: mqtt.tls_insecure = true: " in text
    off = _check(tmp_path, monkeypatch, capsys, 'url = "mqtt://127.0.0.1"\ntls_insecure = true')
    assert off["tls"] == "off" and off["warnings"] == [
        "mqtt.tls_insecure = true has no effect: TLS is off (mqtt://, no ca_file or cert_file)"
    ]


def test_config_check_shows_tls_and_plaintext_credentials(tmp_path, monkeypatch, capsys):
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    doc = _check(tmp_path, monkeypatch, capsys, f'url = "mqtt://127.0.0.1:8883"\nca_file = "{ca}"')
    assert doc["broker"].startswith("mqtts://127.0.0.1:8883") and doc["tls"] == "on, fully verified"
    assert doc["warnings"] == []
    doc = _check(tmp_path, monkeypatch, capsys, f'url = "mqtt://gw:{SECRET}@192.0.2.1"')
    assert doc["broker"].startswith("mqtt://gw@192.0.2.1:1883") and doc["tls"] == "off"
    assert doc["warnings"] == [
        "the MQTT username and password go unencrypted to mqtt://gw@192.0.2.1:1883, which is not this "
        "machine: use mqtts:// (or set mqtt.ca_file)"
    ]
