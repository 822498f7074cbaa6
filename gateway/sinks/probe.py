"""A one-shot broker probe for diagnostics: name lookup and TCP, the TLS handshake, then one MQTT session
(CONNACK, a QoS 1 publish/subscribe round trip). Every step is bounded by a timeout, so a dead or
blackholed broker costs seconds, not minutes.

It returns facts (what happened, how long it took, the broker's own reason codes); turning them into
advice is the diagnostics layer's job. It never uses the service's client id (the broker would drop the
running service's session to admit the probe) and never publishes on the service's topics or status.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from cryptography import x509

from gateway.sinks.url import BrokerUrl

log = logging.getLogger(__name__)

# Error kinds, shared by the results below.
DNS, REFUSED, TIMEOUT, UNREACHABLE, OTHER = "dns", "refused", "timeout", "unreachable", "other"
UNTRUSTED, EXPIRED, HOSTNAME, NOT_TLS, CLIENT_CERT = (
    "untrusted",
    "expired",
    "hostname",
    "not_tls",
    "client_cert",
)
CLOSED, SUBSCRIBE_REFUSED, PUBLISH_REFUSED = "closed", "subscribe_refused", "publish_refused"
CERT_REFUSED = "cert_refused"  # the broker wants a client certificate: none was sent, or it refused ours

LATE_ALERT_WAIT_S = 0.2  # a refusal after the TLS 1.3 handshake comes at once (one round trip)

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that have a plainer explanation than "verify failed".
_X509_EXPIRED, _X509_NOT_YET_VALID, _X509_HOSTNAME_MISMATCH, _X509_IP_MISMATCH = 10, 9, 62, 64


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    broker: BrokerUrl
    client_id: str
    topic: str  # the round trip's topic, one nobody else uses
    protocol: str = "5"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    connect_timeout_s: float = 3.0  # name lookup, TCP connect and TLS handshake, each
    step_timeout_s: float = 3.0  # CONNACK, then the whole round trip

    @property
    def tls(self) -> bool:
        """TLS exactly when the service would use it (MqttSink: mqtts://, a CA or a client certificate)."""
        return self.broker.tls or bool(self.ca_file or self.cert_file)


@dataclass(frozen=True, slots=True)
class TcpResult:
    ok: bool
    elapsed_ms: float
    address: str | None = None  # the address that accepted
    error_kind: str | None = None  # DNS | REFUSED | TIMEOUT | UNREACHABLE | OTHER
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CertInfo:
    subject: str
    issuer: str
    not_after: datetime  # UTC
    names: tuple[str, ...]  # subject alternative names (DNS names and IP addresses)


@dataclass(frozen=True, slots=True)
class TlsResult:
    ok: bool  # handshake done and the certificate verified (chain, dates, host name unless tls_insecure)
    elapsed_ms: float
    version: str | None = None
    cert: CertInfo | None = None  # also filled when verification failed, from an unverified handshake
    error_kind: str | None = None  # UNTRUSTED | EXPIRED | HOSTNAME | NOT_TLS | CLIENT_CERT | TIMEOUT | ...
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SessionResult:
    connected: bool  # CONNACK with a success reason code
    connect_ms: float | None = None
    reason: str | None = None  # CONNACK reason code as the broker named it ("Bad user name or password")
    reason_value: int | None = None
    error_kind: str | None = None  # REFUSED (a failure CONNACK) | TIMEOUT | CLOSED | OTHER
    error: str | None = None
    roundtrip_ms: float | None = None
    roundtrip_error_kind: str | None = None  # SUBSCRIBE_REFUSED | PUBLISH_REFUSED | TIMEOUT | CLOSED
    roundtrip_error: str | None = None


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


def resolve(host: str, port: int, timeout_s: float) -> list[tuple]:
    """getaddrinfo with a deadline (the resolver has none of its own); raises socket.gaierror/TimeoutError."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["v"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            box["e"] = exc

    t = threading.Thread(target=work, name="probe-resolve", daemon=True)
    t.start()
    t.join(timeout_s)
    if "e" in box:
        raise box["e"]  # type: ignore[misc]
    if "v" not in box:
        raise TimeoutError(f"no answer from the name resolver within {timeout_s:g} s")
    return box["v"]  # type: ignore[return-value]


def _connect(s: ProbeSettings) -> tuple[socket.socket, str]:
    """A TCP connection to the broker (first address that accepts); raises OSError."""
    b = s.broker
    infos = resolve(b.host, b.port, s.connect_timeout_s)
    deadline = time.monotonic() + s.connect_timeout_s  # for all addresses together (IPv6 and IPv4)
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(addr)
            return sock, f"{addr[0]}:{addr[1]}"
        except OSError as exc:
            sock.close()
            last = exc
    raise last or TimeoutError(f"no address of {b.host} answered within {s.connect_timeout_s:g} s")


def _kind(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return DNS
    if isinstance(exc, TimeoutError | socket.timeout):
        return TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return UNREACHABLE
    return OTHER


def tcp_check(s: ProbeSettings) -> TcpResult:
    start = time.monotonic()
    try:
        sock, address = _connect(s)
    except OSError as exc:
        return TcpResult(False, _ms(start), error_kind=_kind(exc), error=str(exc) or type(exc).__name__)
    sock.close()
    return TcpResult(True, _ms(start), address=address)


def _cert_info(der: bytes | None) -> CertInfo | None:
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        names=tuple(names),
    )


def _handshake(s: ProbeSettings, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    sock, _ = _connect(s)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=s.broker.host, do_handshake_on_connect=False)
        tls.settimeout(s.connect_timeout_s)
        tls.do_handshake()
        return tls
    except BaseException:
        sock.close()
        raise


def _unverified_cert(s: ProbeSettings) -> CertInfo | None:
    """The broker's certificate without trusting it: only to say *which* certificate was refused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with _handshake(s, ctx) as tls:
            return _cert_info(tls.getpeercert(binary_form=True))
    except (OSError, ValueError):
        return None


def _late_refusal(tls: ssl.SSLSocket) -> str | None:
    """With TLS 1.3 a broker that wants a client certificate we did not send refuses it only after the
    handshake. An MQTT broker says nothing before CONNECT, so anything arriving now is that refusal."""
    tls.settimeout(LATE_ALERT_WAIT_S)
    try:
        data = tls.recv(1)
    except TimeoutError:
        return None
    except ssl.SSLError as exc:
        return exc.reason or str(exc)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return "the broker closed the connection right after the handshake" if not data else None


def tls_check(s: ProbeSettings) -> TlsResult:
    """Handshake as the service would (CA file or the system's CAs, host name checked unless tls_insecure)."""
    start = time.monotonic()
    try:
        ctx = ssl.create_default_context(cafile=s.ca_file)
        ctx.check_hostname = not s.tls_insecure
        if s.cert_file:
            ctx.load_cert_chain(s.cert_file, s.key_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return TlsResult(False, _ms(start), error_kind=CLIENT_CERT, error=str(exc))
    try:
        with _handshake(s, ctx) as tls:
            version, cert = tls.version(), _cert_info(tls.getpeercert(binary_form=True))
            late = _late_refusal(tls)
        if late is not None:
            refused = ("CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")
            kind = CERT_REFUSED if any(r in late.upper() for r in refused) else OTHER
            return TlsResult(False, _ms(start), version, cert, kind, late)
        return TlsResult(True, _ms(start), version, cert)
    except ssl.SSLCertVerificationError as exc:
        code = exc.verify_code
        kind = {
            _X509_EXPIRED: EXPIRED,
            _X509_NOT_YET_VALID: EXPIRED,
            _X509_HOSTNAME_MISMATCH: HOSTNAME,
            _X509_IP_MISMATCH: HOSTNAME,
        }.get(code, UNTRUSTED)
        return TlsResult(
            False, _ms(start), cert=_unverified_cert(s), error_kind=kind, error=exc.verify_message
        )
    except ssl.SSLError as exc:
        # A plain MQTT listener answers the ClientHello with MQTT bytes: "wrong version number".
        kind = NOT_TLS if "WRONG_VERSION_NUMBER" in str(exc).upper() else OTHER
        return TlsResult(False, _ms(start), error_kind=kind, error=exc.reason or str(exc))
    except OSError as exc:
        kind = _kind(exc)
        if kind == OTHER and isinstance(exc, ConnectionResetError | BrokenPipeError):
            kind = NOT_TLS
        return TlsResult(False, _ms(start), error_kind=kind, error=str(exc) or type(exc).__name__)


class _Events:
    """What paho's callbacks reported (they run inside ``client.loop`` in this thread)."""

    def __init__(self) -> None:
        self.connack: mqtt.ReasonCode | None = None
        self.disconnected: str | None = None
        self.suback: list[mqtt.ReasonCode] | None = None
        self.puback: mqtt.ReasonCode | None = None
        self.received_at: float | None = None
        self.token = b""

    def on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connack = rc

    def on_disconnect(self, client, userdata, flags, rc, props) -> None:
        self.disconnected = str(rc)

    def on_subscribe(self, client, userdata, mid, rcs, props) -> None:
        self.suback = list(rcs)

    def on_publish(self, client, userdata, mid, rc, props) -> None:
        self.puback = rc

    def on_message(self, client, userdata, msg) -> None:
        if msg.payload == self.token and self.received_at is None:
            self.received_at = time.monotonic()


def _client(s: ProbeSettings, ev: _Events) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if s.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=protocol
    )
    client.connect_timeout = s.connect_timeout_s
    if s.broker.username:
        client.username_pw_set(s.broker.username, s.broker.password)
    if s.tls:
        client.tls_set(
            ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file, cert_reqs=ssl.CERT_REQUIRED
        )
        if s.tls_insecure:
            client.tls_insecure_set(True)
    client.on_connect = ev.on_connect
    client.on_disconnect = ev.on_disconnect
    client.on_subscribe = ev.on_subscribe
    client.on_publish = ev.on_publish
    client.on_message = ev.on_message
    return client


def _pump(client: mqtt.Client, ev: _Events, until, deadline: float) -> bool:
    """Run paho's loop until ``until()`` holds, the connection drops or ``deadline``; True when it held."""
    while not until():
        if ev.disconnected is not None or time.monotonic() >= deadline:
            return False
        try:
            client.loop(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
        except (OSError, ValueError) as exc:  # a TLS or socket error surfacing in paho's read or write
            ev.disconnected = str(exc) or type(exc).__name__
            return False
    return True


def session_check(s: ProbeSettings, token: bytes) -> SessionResult:
    """Log in, subscribe to ``s.topic``, publish ``token`` there (QoS 1) and time until it comes back."""
    ev = _Events()
    ev.token = token
    try:
        client = _client(s, ev)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return SessionResult(False, error_kind=CLIENT_CERT, error=str(exc))
    start = time.monotonic()
    try:  # paho looks the name up again, unbounded; tcp_check's bounded lookup of it has just succeeded
        client.connect(s.broker.host, s.broker.port, keepalive=max(5, int(s.step_timeout_s * 4)))
    except (OSError, ValueError) as exc:  # TCP, TLS (ssl.SSLError is an OSError)
        return SessionResult(False, error_kind=_kind(exc), error=str(exc) or type(exc).__name__)
    try:
        return _session(client, ev, s, start)
    finally:
        try:
            if ev.connack is not None and not ev.connack.is_failure and ev.disconnected is None:
                client.disconnect()
                client.loop(timeout=0.05)
        except Exception as exc:  # the probe is over; a failing goodbye changes nothing
            log.debug("probe: disconnect failed: %s", exc)
        sock = client.socket()
        if sock is not None:
            sock.close()


def _session(client: mqtt.Client, ev: _Events, s: ProbeSettings, start: float) -> SessionResult:
    if not _pump(client, ev, lambda: ev.connack is not None, time.monotonic() + s.step_timeout_s):
        if ev.disconnected is not None:
            return SessionResult(
                False, error_kind=CLOSED, error=f"the broker closed the connection ({ev.disconnected})"
            )
        return SessionResult(False, error_kind=TIMEOUT, error=f"no CONNACK within {s.step_timeout_s:g} s")
    rc = ev.connack
    connect_ms = _ms(start)
    if rc is None or rc.is_failure:
        return SessionResult(
            False, connect_ms, str(rc), getattr(rc, "value", None), REFUSED, f"the broker refused: {rc}"
        )
    base = {"connected": True, "connect_ms": connect_ms, "reason": str(rc), "reason_value": rc.value}
    deadline = time.monotonic() + s.step_timeout_s
    client.subscribe(s.topic, qos=1)
    if not _pump(client, ev, lambda: ev.suback is not None, deadline):
        return _trip_failed(base, ev, "no SUBACK")
    if ev.suback and ev.suback[0].is_failure:
        return SessionResult(
            **base, roundtrip_error_kind=SUBSCRIBE_REFUSED, roundtrip_error=str(ev.suback[0])
        )
    sent = time.monotonic()
    client.publish(s.topic, ev.token, qos=1)
    _pump(
        client,
        ev,
        lambda: ev.puback is not None and (ev.puback.is_failure or ev.received_at is not None),
        deadline,
    )
    if ev.puback is not None and ev.puback.is_failure:
        return SessionResult(**base, roundtrip_error_kind=PUBLISH_REFUSED, roundtrip_error=str(ev.puback))
    if ev.received_at is None:
        return _trip_failed(base, ev, "the message did not come back" if ev.puback else "no PUBACK")
    return SessionResult(**base, roundtrip_ms=(ev.received_at - sent) * 1000.0)


def _trip_failed(base: dict, ev: _Events, what: str) -> SessionResult:
    if ev.disconnected is not None:
        return SessionResult(
            **base, roundtrip_error_kind=CLOSED, roundtrip_error=f"disconnected ({ev.disconnected})"
        )
    return SessionResult(**base, roundtrip_error_kind=TIMEOUT, roundtrip_error=what)
