"""mqtts:// with a CA and a client certificate against a private Mosquitto that requires one."""

from __future__ import annotations

import datetime
import ipaddress
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.sinks.mqtt import MqttSettings, MqttSink
from gateway.sinks.url import parse_broker_url


def _cert(subject: str, issuer_key, issuer_name, key, ca: bool = False, ip: str | None = None):
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


def _write(path, cert=None, key=None):
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return str(path)


def make_pki(d):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    files = {"ca": _write(d / "ca.pem", ca)}
    for name, ip in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"lora-gw-{name}", ca_key, ca.subject, key, ip=ip)
        files[name] = _write(d / f"{name}.pem", cert)
        files[f"{name}_key"] = _write(d / f"{name}.key", key=key)
    return files


def test_tls_with_ca_and_client_certificate(tmp_path, broker_factory):
    pki = make_pki(tmp_path)
    b = broker_factory(
        extra=(
            f"cafile {pki['ca']}",
            f"certfile {pki['server']}",
            f"keyfile {pki['server_key']}",
            "require_certificate true",
        )
    )
    url = parse_broker_url(f"mqtts://127.0.0.1:{b.port}")
    assert url.tls

    def sink(**tls) -> MqttSink:
        s = MqttSink(
            MqttSettings(
                broker=url,
                client_id=f"tls-{len(tls)}",
                status_topic="lora/gw/status",
                reconnect_min_s=1,
                reconnect_max_s=1,
                ca_file=pki["ca"],
                **tls,
            )
        )
        s.start()
        return s

    good = sink(cert_file=pki["client"], key_file=pki["client_key"])
    deadline = time.monotonic() + 10
    while not good.connected and time.monotonic() < deadline:
        good.wait(0.02)  # the owner thread drives the client: no network thread
    assert good.connected
    assert good.publish("lora/gw/x", b"1", token=1)
    got = []
    while not got and time.monotonic() < deadline:
        good.wait(0.01)
        got = good.poll()
    assert [d.ok for d in got] == [True]
    good.stop()
    anonymous = sink()  # no client certificate: the broker refuses the TLS handshake
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        anonymous.wait(0.02)
        assert not anonymous.connected
    assert anonymous.stats.connects == 0
    anonymous.stop()
