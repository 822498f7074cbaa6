"""``lora-gw diag mqtt``: the broker checks alone, against private Mosquittos with TLS, passwords, ACLs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gateway.cli.main import main
from gateway.diag import broker
from gateway.sinks import probe
from gateway.sinks.probe import CertInfo, ProbeSettings, TlsResult
from gateway.sinks.url import parse_broker_url
from tests.diag.system_helpers import make_pki, silent_server, tls_lines, write_config
from tests.service import conftest as service_fixtures

BROKER_CHECKS = ["broker_reachable", "broker_tls", "broker_auth", "broker_roundtrip"]

broker_factory = service_fixtures.broker_factory  # the private Mosquitto fixture


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for k in ("LORA_GW_MQTT_URL", "LORA_GW_MQTT_USERNAME", "LORA_GW_MQTT_PASSWORD"):
        monkeypatch.delenv(k, raising=False)


def diag_mqtt(capsys, conf) -> tuple[int, dict[str, dict]]:
    code = main(["diag", "mqtt", "--config", str(conf), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["checks"]] == BROKER_CHECKS
    assert doc["ok"] is (code == 0)
    return code, {c["name"]: c for c in doc["checks"]}


def tls_config(tmp_path, port, ca):
    return write_config(tmp_path, f"mqtts://127.0.0.1:{port}", mqtt_extra=f'ca_file = "{ca}"')


def test_plain_broker_all_fine(tmp_path, broker_factory, capsys):
    b = broker_factory()
    code, checks = diag_mqtt(capsys, write_config(tmp_path, b.url))
    assert code == 0
    assert [checks[n]["ok"] for n in BROKER_CHECKS] == [True, None, True, True]
    assert "plain MQTT" in checks["broker_tls"]["detail"]


def test_trusted_tls_certificate_passes_with_days_left(tmp_path, broker_factory, capsys):
    pki = make_pki(tmp_path, days=200)
    b = broker_factory(extra=tls_lines(pki))
    code, checks = diag_mqtt(capsys, tls_config(tmp_path, b.port, pki.ca))
    assert code == 0, checks
    tls = checks["broker_tls"]
    assert tls["ok"] is True and "CN=broker" in tls["detail"] and pki.ca in tls["detail"]
    assert "(199 days left)" in tls["detail"] or "(200 days left)" in tls["detail"]
    assert checks["broker_roundtrip"]["ok"] is True


def test_untrusted_tls_certificate_fails_broker_tls(tmp_path, broker_factory, capsys):
    served = make_pki(tmp_path, tag="-served")
    other = make_pki(tmp_path, tag="-other")
    b = broker_factory(extra=tls_lines(served))
    code, checks = diag_mqtt(capsys, tls_config(tmp_path, b.port, other.ca))
    tls = checks["broker_tls"]
    assert code == 1 and tls["ok"] is False
    assert "CN=broker-served, issued by CN=test-ca-served is not trusted by the CA in" in tls["cause"]
    assert "mqtt.ca_file" in tls["fix"]
    assert checks["broker_reachable"]["ok"] is True
    assert checks["broker_auth"]["ok"] is None and checks["broker_roundtrip"]["ok"] is None


def test_certificate_expiring_within_30_days_fails_but_the_broker_still_works(
    tmp_path, broker_factory, capsys
):
    pki = make_pki(tmp_path, days=10)
    b = broker_factory(extra=tls_lines(pki))
    code, checks = diag_mqtt(capsys, tls_config(tmp_path, b.port, pki.ca))
    tls = checks["broker_tls"]
    assert code == 1 and tls["ok"] is False and "expires in 10 days" in tls["cause"]
    assert "renew" in tls["fix"]
    assert checks["broker_auth"]["ok"] is True and checks["broker_roundtrip"]["ok"] is True


def test_certificate_for_another_address_fails_unless_tls_insecure(tmp_path, broker_factory, capsys):
    pki = make_pki(tmp_path, ip="127.0.0.2")
    b = broker_factory(extra=tls_lines(pki))
    code, checks = diag_mqtt(capsys, tls_config(tmp_path, b.port, pki.ca))
    tls = checks["broker_tls"]
    assert code == 1 and tls["ok"] is False and "made out to 127.0.0.2, not 127.0.0.1" in tls["cause"]
    conf = write_config(
        tmp_path, f"mqtts://127.0.0.1:{b.port}", mqtt_extra=f'ca_file = "{pki.ca}"\ntls_insecure = true'
    )
    code, checks = diag_mqtt(capsys, conf)
    assert code == 0 and checks["broker_tls"]["ok"] is True  # as the service: no host name check then


def test_broker_that_requires_a_client_certificate(tmp_path, broker_factory, capsys):
    pki = make_pki(tmp_path)
    b = broker_factory(extra=(*tls_lines(pki), "require_certificate true"))
    code, checks = diag_mqtt(capsys, tls_config(tmp_path, b.port, pki.ca))
    tls = checks["broker_tls"]
    assert code == 1 and tls["ok"] is False and "requires a client certificate" in tls["cause"]
    assert "mqtt.cert_file and mqtt.key_file" in tls["fix"] and checks["broker_auth"]["ok"] is None
    both = f'ca_file = "{pki.ca}"\ncert_file = "{pki.client}"\nkey_file = "{pki.client_key}"'
    conf = write_config(tmp_path, f"mqtts://127.0.0.1:{b.port}", mqtt_extra=both)
    code, checks = diag_mqtt(capsys, conf)
    assert code == 0, checks  # mutual TLS as the service would do it


def test_tls_against_a_plain_port(tmp_path, broker_factory, capsys):
    b = broker_factory()
    code, checks = diag_mqtt(capsys, write_config(tmp_path, f"mqtts://127.0.0.1:{b.port}"))
    tls = checks["broker_tls"]
    assert code == 1 and tls["ok"] is False and "does not speak TLS" in tls["cause"]
    assert "mqtt://" in tls["fix"]


def test_acl_that_refuses_the_gateways_topic(tmp_path, broker_factory, capsys):
    b = broker_factory(acl="topic read other/#\n")  # anonymous: may read elsewhere, write nowhere
    code, checks = diag_mqtt(capsys, write_config(tmp_path, b.url))
    trip = checks["broker_roundtrip"]
    assert code == 1 and checks["broker_auth"]["ok"] is True
    assert trip["ok"] is False and "lora/gw-test/#" in trip["fix"] and "ACL" in trip["fix"]
    assert "refuses the gateway's messages" in trip["cause"]  # MQTT v5: PUBACK 0x87 Not authorized


def test_not_an_mqtt_broker(tmp_path, capsys):
    with silent_server() as port:
        code, checks = diag_mqtt(capsys, write_config(tmp_path, f"mqtt://127.0.0.1:{port}"))
    auth = checks["broker_auth"]
    assert code == 1 and checks["broker_reachable"]["ok"] is True
    assert auth["ok"] is False and "no MQTT answer to the login within 3 s" in auth["cause"]


def test_unresolvable_name_is_a_dns_failure():
    s = ProbeSettings(parse_broker_url("mqtt://no-such-host.invalid:1883"), "c", "t")
    r = probe.tcp_check(s)
    c = broker.reachable_check(s, r, "mqtt://no-such-host.invalid:1883")
    assert r.error_kind == probe.DNS and c.ok is False and "cannot be looked up" in c.cause


def test_tls_verdicts_from_probe_facts():
    s = ProbeSettings(parse_broker_url("mqtts://broker.lan"), "c", "t", ca_file="/etc/ca.pem")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    cert = CertInfo("CN=broker", "CN=ca", now + timedelta(days=90), ("broker.lan",))
    assert broker.tls_check(s, TlsResult(True, 1.0, "TLSv1.3", cert), now).ok is True
    old = CertInfo("CN=broker", "CN=ca", now - timedelta(days=1), ())
    expired = broker.tls_check(
        s, TlsResult(False, 1.0, cert=old, error_kind=probe.EXPIRED, error="expired"), now
    )
    assert expired.ok is False and "validity dates (valid until 2026-11-30)" in expired.cause
    assert "clock_sync" in expired.fix


def test_expired_certificate_fails_broker_tls(tmp_path, broker_factory, capsys):
    pki = make_pki(tmp_path, days=-0.001)  # expired a minute and a half ago
    b = broker_factory(extra=tls_lines(pki))
    code, checks = diag_mqtt(capsys, tls_config(tmp_path, b.port, pki.ca))
    tls = checks["broker_tls"]
    assert code == 1 and tls["ok"] is False and "outside its validity dates" in tls["cause"]
    assert "renew" in tls["fix"] and checks["broker_auth"]["ok"] is None
