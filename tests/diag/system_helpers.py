"""Shared by the system-half diag tests: configs, a healthy state directory, certificates, odd servers."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import gateway.codec
from gateway.codec import DEMO_MODEL, ModelStore
from gateway.diag.system import Host, Output
from gateway.frames.registry import NodeRegistry
from gateway.sinks.outbox import Outbox, OutboxSettings

CHECK_KEYS = ["name", "ok", "detail", "cause", "fix"]
SYSTEM_CHECKS = [
    "config", "spi_device", "broker_reachable", "broker_tls", "broker_auth", "broker_roundtrip",
    "outbox", "state_access", "clock_sync", "models", "systemd_unit",
]  # fmt: skip
NO_SYSTEMD = Host(systemd=lambda: False)
DEMO_WEIGHTS = Path(gateway.codec.__file__).parent / "data" / DEMO_MODEL  # the packaged weight file


def write_config(
    d: Path,
    url: str,
    *,
    secrets: str | None = None,
    mqtt_extra: str = "",
    state_dir: Path | None = None,
    radio: str = 'backend = "emulator"',
) -> Path:
    """A gateway config in ``d`` (and a 0600 secrets file beside it when ``secrets`` is given)."""
    state = state_dir or d / "state"
    lines = ["[gateway]", 'id = "gw-test"', f'state_dir = "{state}"']
    if secrets is not None:
        sp = d / "secrets.toml"
        sp.write_text(secrets)
        sp.chmod(0o600)
        lines.append('secrets_file = "secrets.toml"')
    lines += ["[radio]", radio, "[mqtt]", f'url = "{url}"', mqtt_extra]
    path = d / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_state(state: Path) -> Path:
    """A state directory as a running service leaves it: the database (outbox and nodes) and a model."""
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)  # as systemd's StateDirectoryMode= leaves it
    db = state / "gateway.db"
    Outbox(db, OutboxSettings()).close()
    NodeRegistry(db).close()
    ModelStore(state).install(DEMO_WEIGHTS)
    return state


def systemd_host(outputs: dict[str, Output | None]) -> Host:
    """A host with systemd whose commands answer with ``outputs[argv[0]]``; records what was run."""

    def run(argv: list[str], timeout_s: float) -> Output | None:
        assert timeout_s <= 5.0, "every command must have a short timeout"
        return outputs.get(argv[0])

    return Host(run=run, systemd=lambda: True)


# ------------------------------------------------------------------------------------------ certificates


@dataclass
class Pki:
    ca: str  # the CA certificate file
    server: str
    server_key: str
    client: str  # a client certificate (CN=gateway) signed by the same CA
    client_key: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(path: Path, obj) -> str:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return str(path)


def make_pki(d: Path, days: float = 365, ip: str = "127.0.0.1", tag: str = "") -> Pki:
    """A self-signed CA and a server certificate for ``ip`` valid ``days`` from now."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"test-ca{tag}"))
        .issuer_name(_name(f"test-ca{tag}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = [_pem(d / f"ca{tag}.pem", ca)]
    for role, cn in (("server", f"broker{tag}"), ("client", "gateway")):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if role == "server":
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
            b = b.add_extension(san, critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        files += [_pem(d / f"{role}{tag}.pem", cert), _pem(d / f"{role}{tag}.key", key)]
    return Pki(*files)


def tls_lines(pki: Pki) -> tuple[str, ...]:
    return (f"cafile {pki.ca}", f"certfile {pki.server}", f"keyfile {pki.server_key}")


# ----------------------------------------------------------------------------------------- odd servers


@contextmanager
def blackholed_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener with a full accept queue (like a dropping firewall)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    try:
        yield port
    finally:
        for c in fillers:
            c.close()
        srv.close()


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (not an MQTT broker, or a hung one)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()
