"""The broker checks (``broker_reachable``, ``broker_tls``, ``broker_auth``, ``broker_roundtrip``): the
probe's facts about the broker the service would use, turned into plain-words causes and fixes.

The broker, credentials and TLS files come from ``cfg.mqtt`` as ``load_config`` resolved them (config
file, secrets file, ``LORA_GW_MQTT_*`` environment), so doctor tests what ``lora-gw run`` would do. A
later check that cannot run because an earlier one failed is reported as not applicable (``ok`` None),
so the one real cause stands out.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.diag.report import Check
from gateway.service.config import ENV_PASSWORD, ENV_URL, ENV_USERNAME, Config
from gateway.sinks import probe
from gateway.sinks.probe import ProbeSettings, SessionResult, TcpResult, TlsResult

CONNECT_TIMEOUT_S = 3.0  # lookup, TCP and TLS each: a blackholed broker costs this, not the kernel's 2 min
STEP_TIMEOUT_S = 3.0  # CONNACK, and the whole publish/subscribe round trip
EXPIRY_WARNING_DAYS = 30

# CONNACK reason codes (MQTT v5 §3.2.2.2; paho maps v3.1.1 return codes onto them) → cause, fix.
_CONNACK = {
    0x84: ("the broker does not speak MQTT v5", 'set mqtt.protocol = "3.1.1" in the config'),
    0x85: (
        "the broker rejected the client id",
        "set mqtt.client_id to a short plain id (letters, digits, -)",
    ),
    0x88: ("the broker is unavailable", "check the broker's log and restart it"),
    0x89: ("the broker is too busy", "try again later; check the broker's load"),
    0x8A: ("the broker has banned this client", "ask the broker's administrator to lift the ban"),
    0x8C: ("the broker wants another authentication method", "check the broker's authentication settings"),
    0x9F: ("the broker limits how often clients connect", "wait a minute and run the check again"),
}


def probe_settings(cfg: Config) -> ProbeSettings:
    """The probe, configured like the service's sink but with its own client id and topic."""
    m = cfg.mqtt
    client_id = f"{m.client_id or 'lora-gw-' + cfg.gateway.id}-doctor-{secrets.token_hex(3)}"
    topic = f"{m.topic_prefix}/{cfg.gateway.id}/doctor/{secrets.token_hex(4)}"
    return ProbeSettings(
        broker=m.broker,
        client_id=client_id,
        topic=topic,
        protocol=m.protocol,
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key_file,
        tls_insecure=m.tls_insecure,
        connect_timeout_s=max(CONNECT_TIMEOUT_S, min(m.connect_timeout_s, 5.0)),
        step_timeout_s=STEP_TIMEOUT_S,
    )


def _origin(env: Mapping[str, str]) -> str:
    """Where the broker settings came from, when the environment overrides the file."""
    over = [k for k in (ENV_URL, ENV_USERNAME, ENV_PASSWORD) if env.get(k)]
    return f" (from {', '.join(over)})" if over else ""


def broker_checks(
    cfg: Config, now: datetime | None = None, env: Mapping[str, str] | None = None
) -> list[Check]:
    """The four broker checks, in order; at most ~4 timeouts of a few seconds each whatever fails."""
    s = probe_settings(cfg)
    b = s.broker
    where = f"{'mqtts' if b.tls else 'mqtt'}://{f'[{b.host}]' if ':' in b.host else b.host}:{b.port}"
    tcp = probe.tcp_check(s)
    out = [reachable_check(s, tcp, where + _origin(os.environ if env is None else env))]
    if not tcp.ok:
        why = "not checked: the broker is not reachable"
        return [
            *out,
            Check.skipped("broker_tls", why),
            Check.skipped("broker_auth", why),
            Check.skipped("broker_roundtrip", why),
        ]
    if s.tls:
        tls = probe.tls_check(s)
        out.append(tls_check(s, tls, now or datetime.now(UTC)))
        if not tls.ok:
            why = "not checked: the TLS connection failed"
            return [*out, Check.skipped("broker_auth", why), Check.skipped("broker_roundtrip", why)]
    else:
        out.append(Check.skipped("broker_tls", f"{where} is plain MQTT: no TLS configured"))
    session = probe.session_check(s, secrets.token_hex(8).encode())
    out.append(auth_check(s, session))
    if not session.connected:
        out.append(Check.skipped("broker_roundtrip", "not checked: the broker did not accept the connection"))
    else:
        out.append(roundtrip_check(s, session))
    return out


def reachable_check(s: ProbeSettings, r: TcpResult, where: str) -> Check:
    host, port = s.broker.host, s.broker.port
    if r.ok:
        return Check.passed("broker_reachable", f"{where} accepts connections ({r.elapsed_ms:.1f} ms)")
    detail = f"{where}: {r.error}"
    if r.error_kind == probe.DNS:
        return Check.failed(
            "broker_reachable",
            detail,
            f"the broker's name {host!r} cannot be looked up (DNS)",
            "check the host name in mqtt.url and the network, or use the broker's IP address",
        )
    if r.error_kind == probe.REFUSED:
        return Check.failed(
            "broker_reachable",
            detail,
            f"nothing accepts connections on {host} port {port}:"
            " the broker is not running or uses another port",
            "start the broker (sudo systemctl start mosquitto) or correct the port in mqtt.url",
        )
    if r.error_kind == probe.TIMEOUT:
        return Check.failed(
            "broker_reachable",
            detail,
            f"no answer from {host} port {port} within {s.connect_timeout_s:g} s:"
            " the host is down or a firewall drops the traffic",
            f"check that the broker's computer is on and reachable (ping {host}) and port {port} is open",
        )
    if r.error_kind == probe.UNREACHABLE:
        return Check.failed(
            "broker_reachable",
            detail,
            f"there is no network route to {host}",
            "check the gateway's network connection (cable or Wi-Fi) and the broker's address in mqtt.url",
        )
    return Check.failed(
        "broker_reachable",
        detail,
        f"cannot connect to {host} port {port}: {r.error}",
        "check the broker's address in mqtt.url and the network",
    )


def _trust(s: ProbeSettings) -> str:
    return f"the CA in {s.ca_file}" if s.ca_file else "the system's CA certificates"


def tls_check(s: ProbeSettings, r: TlsResult, now: datetime) -> Check:
    c = r.cert
    if r.ok and c is not None:
        days = (c.not_after - now).total_seconds() / 86400.0
        detail = f"{r.version}, {c.subject}, trusted by {_trust(s)}, valid until {c.not_after:%Y-%m-%d}"
        if days < EXPIRY_WARNING_DAYS:
            return Check.failed(
                "broker_tls",
                detail,
                f"the broker's certificate expires in {max(days, 0):.0f} days ({c.not_after:%Y-%m-%d})",
                "renew the broker's certificate before then and restart the broker",
            )
        return Check.passed("broker_tls", f"{detail} ({days:.0f} days left)")
    if r.ok:  # a handshake without a certificate cannot happen with verification on; say so rather than pass
        return Check.failed(
            "broker_tls", r.version or "", "the broker sent no certificate", "check the broker's TLS setup"
        )
    cert = f"{c.subject}, issued by {c.issuer}" if c else "the broker's certificate"
    detail = f"{s.broker.host}:{s.broker.port}: {r.error}"
    if r.error_kind == probe.UNTRUSTED:
        return Check.failed(
            "broker_tls",
            detail,
            f"{cert} is not trusted by {_trust(s)} ({r.error})",
            "set mqtt.ca_file to the CA certificate that signed the broker's certificate",
        )
    if r.error_kind == probe.EXPIRED:
        when = f" (valid until {c.not_after:%Y-%m-%d})" if c else ""
        return Check.failed(
            "broker_tls",
            detail,
            f"the broker's certificate is outside its validity dates{when}",
            "renew the broker's certificate (and check the gateway's clock: see clock_sync)",
        )
    if r.error_kind == probe.HOSTNAME:
        names = ", ".join(c.names) if c and c.names else "other names"
        return Check.failed(
            "broker_tls",
            detail,
            f"the broker's certificate is made out to {names}, not {s.broker.host}",
            "use a host name from the certificate in mqtt.url, or reissue the certificate for this name",
        )
    if r.error_kind == probe.NOT_TLS:
        return Check.failed(
            "broker_tls",
            detail,
            f"port {s.broker.port} does not speak TLS (a plain MQTT port?)",
            "use mqtt:// for this port, or the broker's TLS port (usually 8883) with mqtts://",
        )
    if r.error_kind == probe.CLIENT_CERT:
        return Check.failed(
            "broker_tls",
            detail,
            f"the TLS files cannot be loaded: {r.error}",
            "check mqtt.ca_file, mqtt.cert_file and mqtt.key_file: PEM files, a matching pair, readable",
        )
    if r.error_kind == probe.CERT_REFUSED:
        if s.cert_file:
            cause = f"the broker refused the gateway's client certificate {s.cert_file} ({r.error})"
            fix = "use a client certificate signed by a CA the broker trusts (its cafile)"
        else:
            cause = f"the broker requires a client certificate and none is configured ({r.error})"
            fix = "set mqtt.cert_file and mqtt.key_file to the gateway's client certificate and key"
        return Check.failed("broker_tls", detail, cause, fix)
    if r.error_kind == probe.TIMEOUT:
        return Check.failed(
            "broker_tls",
            detail,
            f"the broker did not finish the TLS handshake within {s.connect_timeout_s:g} s",
            "check that this port is the broker's TLS port and that the broker is not overloaded",
        )
    return Check.failed(
        "broker_tls",
        detail,
        f"the TLS handshake failed: {r.error}",
        "check the broker's TLS settings, mqtt.ca_file and any client certificate it requires",
    )


def auth_check(s: ProbeSettings, r: SessionResult) -> Check:
    creds = "with the configured user name and password" if s.broker.username else "without credentials"
    if r.connected:
        return Check.passed("broker_auth", f"accepted {creds} (MQTT {s.protocol}, {r.connect_ms:.0f} ms)")
    detail = f"CONNACK: {r.reason}" if r.reason else (r.error or "")
    if r.error_kind == probe.REFUSED:
        code = r.reason_value
        if code == 0x86 or (code == 0x87 and s.broker.username):
            return Check.failed(
                "broker_auth",
                detail,
                f"the broker refused the user name or password ({r.reason})",
                "correct mqtt.username / mqtt.password (secrets file or LORA_GW_MQTT_USERNAME/PASSWORD),"
                " or add the user on the broker: sudo mosquitto_passwd /etc/mosquitto/passwd USER",
            )
        if code == 0x87:
            return Check.failed(
                "broker_auth",
                detail,
                f"the broker does not accept clients without a login ({r.reason})",
                "set mqtt.username and mqtt.password in the secrets file",
            )
        cause, fix = _CONNACK.get(
            code or -1,
            (
                f"the broker refused the connection ({r.reason})",
                "check the broker's log for why it refused the gateway",
            ),
        )
        return Check.failed("broker_auth", detail, f"{cause} ({r.reason})", fix)
    if r.error_kind == probe.TIMEOUT:
        return Check.failed(
            "broker_auth",
            detail,
            f"connected, but no MQTT answer to the login within {s.step_timeout_s:g} s",
            "check that this port belongs to an MQTT broker (and whether it expects TLS: mqtts://)",
        )
    if r.error_kind == probe.CLOSED:
        hint = " (if it requires a client certificate: set mqtt.cert_file and mqtt.key_file)" if s.tls else ""
        return Check.failed(
            "broker_auth",
            detail,
            "the broker closed the connection during the login",
            f"check the broker's log for why it dropped the gateway{hint}",
        )
    return Check.failed(
        "broker_auth",
        detail,
        f"the MQTT connection failed: {r.error}",
        "check the broker's address, port and TLS settings in the config",
    )


def roundtrip_check(s: ProbeSettings, r: SessionResult) -> Check:
    if r.roundtrip_ms is not None:
        return Check.passed(
            "broker_roundtrip", f"published and received back in {r.roundtrip_ms:.1f} ms (QoS 1, {s.topic})"
        )
    prefix = s.topic.rsplit("/", 2)[0]
    detail = f"{s.topic}: {r.roundtrip_error}"
    if r.roundtrip_error_kind == probe.SUBSCRIBE_REFUSED:
        return Check.failed(
            "broker_roundtrip",
            detail,
            f"the broker does not let the gateway read {prefix}/doctor/# ({r.roundtrip_error})",
            f"allow the gateway's user to read and write {prefix}/# in the broker's ACL",
        )
    if r.roundtrip_error_kind == probe.PUBLISH_REFUSED:
        return Check.failed(
            "broker_roundtrip",
            detail,
            f"the broker refuses the gateway's messages on {prefix}/ ({r.roundtrip_error}):"
            " its telemetry would be refused too",
            f"allow the gateway's user to write {prefix}/# in the broker's ACL",
        )
    if r.roundtrip_error_kind == probe.CLOSED:
        return Check.failed(
            "broker_roundtrip",
            detail,
            "the broker dropped the connection during the test message",
            "check the broker's log (an ACL or message size limit?)",
        )
    silent = "; with MQTT 3.1.1 a refused message is dropped silently" if s.protocol != "5" else ""
    return Check.failed(
        "broker_roundtrip",
        detail,
        f"the test message did not come back within {s.step_timeout_s:g} s{silent}",
        f"check that the broker's ACL lets the gateway read and write {prefix}/#",
    )
