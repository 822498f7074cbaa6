"""The MQTT publisher: the only module that imports paho-mqtt.

Threads: none of its own. paho runs without its network thread; ONE owner thread (the core) calls
everything here: ``wait`` (a select() over the broker socket and the owner's wake fd, then paho's
read/write/misc steps and the reconnect schedule), ``publish``, ``poll``, ``check_health`` and
``stop``. paho callbacks therefore run in the owner thread, inside ``wait``; they only update plain
fields and append to a list. ``publish`` only queues (paho's external-event-loop mode); the next
``wait`` writes the whole batch. No lock is contended: with a paho network thread, publish() and
PUBACK handling fought over paho's message mutex and the GIL at every frame.

Reconnecting is ours (exponential backoff from ``reconnect_min_s`` to ``reconnect_max_s`` with
jitter, reset by a successful CONNACK). ``client.reconnect()`` is a blocking TCP connect (and TLS
handshake) in the owner thread, bounded by ``connect_timeout_s`` each: keep it short for a broker on
the LAN; radio packets keep queueing meanwhile (nothing is lost, they are only later). Host name
resolution is the resolver's and not bounded by it: prefer an address, or a name in /etc/hosts.

Delivery is judged by the PUBACK reason code: ≥ 0x80 (e.g. 0x87 Not authorized from an ACL, MQTT v5
only) is *refused*, never counted delivered; 0x10 "No matching subscribers" is a success. paho keeps
QoS 1 messages in RAM only, so the caller (the outbox) must keep them until ``Delivery.ok``.

A *poison* message is one that can never be delivered as it is, whatever the connection: refusing it
must not stop the messages behind it. ``publish`` raises :class:`Unpublishable` for a topic the MQTT
spec forbids or brokers drop the connection for (wildcards, control characters, noncharacters such as
U+FFFF, undecodable text, over 65,535 bytes — Mosquitto answers those by closing the connection, so the
message would be resent after every reconnect), for a packet larger than the broker's announced Maximum
Packet Size, and for anything else paho refuses (``ValueError``). A PUBACK reason about the message
itself (0x90 Topic Name invalid, 0x95 Packet too large, 0x99 Payload format invalid) is a ``poison``
delivery; other refusals (0x87 Not authorized, 0x97 Quota exceeded) stay ``refused``: retried later.

A broker may also refuse a message by closing the connection (Mosquitto does for what it finds malformed
or too large; a PUBACK reason paho cannot parse, e.g. 0x95 from ``message_size_limit``, makes paho close
it too), and paho would resend it first after every reconnect, forever. The reason seen is then only
"connection lost", and PUBACKs the broker had queued are lost with it, so the oldest unacknowledged
message is not necessarily the culprit. Hence *isolation*: when a connection dies with messages in
flight twice in a row (each within ``ack_timeout_s`` of the previous connect), the client is rebuilt (so
paho resends nothing), every in-flight message comes back as ``retry``, and messages then go out one at
a time; a connection that dies with exactly one message in flight returns it as ``suspect`` (the owner
parks it at its second strike). Isolation ends after as many PUBACKs as messages were in flight when it
began, or once the connection has been up ``ack_timeout_s`` with nothing in flight; meanwhile untracked
messages (stats, gap estimates) are not sent, so that only the message under test is ever in flight.

The client's health is watched, not trusted: an exception out of paho, PUBACKs missing for
``ack_timeout_s`` while connected, or a client whose state contradicts ours (no socket while
"connected") makes the sink discard and rebuild the client (counted in ``loop_restarts``); every
in-flight message then comes back as a ``retry`` delivery so the owner republishes it from the outbox.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import random
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import paho.mqtt.client as mqtt

from gateway.errors import GatewayError
from gateway.sinks.url import BrokerUrl

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
_QUEUE_FULL = mqtt.MQTT_ERR_QUEUE_SIZE


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux


def _ack_now(sock: object) -> None:
    """Acknowledge at once what was just read. A broker that leaves Nagle on (mosquitto's default) holds
    the 2nd..nth PUBACK of a burst until our TCP ACK, which Linux delays by up to 40 ms: without this,
    that wait was most of the gateway's p99 latency at 200 frames/s (47 ms; 27 ms with it)."""
    if _QUICKACK is not None and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def _ignore_socket(client: mqtt.Client, userdata: object, sock: object) -> None:
    """paho's "register write" hook: nothing to do, ``MqttSink.wait`` checks ``want_write`` itself."""


class MqttError(GatewayError):
    reason = "mqtt"


class Unpublishable(MqttError):
    """This message can never be published as it is (its topic, size or encoding); the message says why."""

    reason = "unpublishable"


# PUBACK reason codes that judge the message, not the session: publishing it again cannot succeed.
POISON_REASONS = frozenset({0x90, 0x95, 0x99})
MAX_TOPIC_BYTES = 65535


@functools.lru_cache(maxsize=4096)  # a few topics per node, checked at every publish: once each
def topic_problem(topic: str) -> str | None:
    """Why a broker would refuse ``topic`` for a PUBLISH (None: it is fine). MQTT 5 §1.5.4 forbids
    U+0000 and lets a receiver close the connection for control characters and noncharacters;
    Mosquitto does ("malformed packet")."""
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "wildcard (+ or #) in the topic"
    for ch in topic:
        cp = ord(ch)
        if cp < 0x20 or 0x7F <= cp <= 0x9F:
            return f"control character U+{cp:04X} in the topic"
        if 0xD800 <= cp <= 0xDFFF:
            return "undecodable text (a lone surrogate) in the topic"
        if 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE:
            return f"noncharacter U+{cp:04X} in the topic"
    size = len(topic.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        return f"topic of {size} bytes (MQTT allows {MAX_TOPIC_BYTES})"
    return None


def publish_packet_size(topic: str, payload: bytes, v5: bool) -> int:
    """Bytes of a QoS 1 PUBLISH packet without properties (to compare with Maximum Packet Size)."""
    remaining = 2 + len(topic.encode("utf-8")) + 2 + (1 if v5 else 0) + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2097152 else 4
    return 1 + length_bytes + remaining


@dataclass(frozen=True, slots=True)
class MqttSettings:
    broker: BrokerUrl
    client_id: str
    status_topic: str  # retained "online"/"offline"; also the Last Will
    protocol: str = "5"  # "5" | "3.1.1" (3.1.1 cannot report ACL refusals: the broker drops silently)
    keepalive_s: int = 60
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_inflight: int = 200
    ack_timeout_s: float = 30.0
    # A connection attempt blocks the core thread up to this long for the TCP connect, and again for
    # the TLS handshake; a CONNACK missing for connect_timeout_s + ack_timeout_s starts a new attempt.
    connect_timeout_s: float = 2.0


class TlsFields(Protocol):
    """What decides the connection's security: MqttSettings and the config's [mqtt] section both have it."""

    @property
    def broker(self) -> BrokerUrl: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def tls_insecure(self) -> bool: ...


def uses_tls(s: TlsFields) -> bool:
    """TLS is on for mqtts://, and also for mqtt:// with a CA file or a client certificate (port kept)."""
    return bool(s.broker.tls or s.ca_file or s.cert_file)


def shown_url(s: TlsFields) -> str:
    """The broker URL as it is really connected to (mqtts:// whenever TLS is on), without the password."""
    return replace(s.broker, tls=uses_tls(s)).redacted()


def _loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: not resolved here, so not known to stay on this machine


def security_warnings(s: TlsFields) -> list[str]:
    """One line per weakness of the broker connection, for the start of the service and `config check`.
    Never contains the password."""
    out = []
    tls = uses_tls(s)
    if s.tls_insecure and tls:
        out.append(
            "mqtt.tls_insecure = true: the broker's certificate is not checked against its host name, so "
            "any host holding a certificate from the trusted CAs can pose as the broker"
        )
    elif s.tls_insecure:
        out.append("mqtt.tls_insecure = true has no effect: TLS is off (mqtt://, no ca_file or cert_file)")
    if not tls and s.broker.username and not _loopback(s.broker.host):
        what = "username and password go" if s.broker.password else "username goes"
        out.append(
            f"the MQTT {what} unencrypted to {shown_url(s)}, which is not this machine: "
            "use mqtts:// (or set mqtt.ca_file)"
        )
    return out


@dataclass(frozen=True, slots=True)
class Delivery:
    """The fate of one publish: ``ok`` (PUBACK success), ``refused`` (reason ≥ 0x80, retried later),
    ``poison`` (a reason about the message itself: never retried automatically), ``suspect`` (the
    connection died while it was the only message in flight) or ``retry``."""

    token: object
    status: str  # "ok" | "refused" | "poison" | "suspect" | "retry"
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(slots=True)
class MqttStats:
    published: int = 0
    delivered: int = 0
    refused: int = 0
    retried: int = 0
    connects: int = 0
    disconnects: int = 0
    loop_restarts: int = 0
    refusals_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "published": self.published,
            "delivered": self.delivered,
            "refused": self.refused,
            "retried": self.retried,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "loop_restarts": self.loop_restarts,
        }


class MqttSink:
    """QoS 1 publisher with an availability topic, reason-code checks, reconnects and a client watchdog."""

    def __init__(
        self,
        settings: MqttSettings,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._url = shown_url(settings)
        self.stats = MqttStats()
        self._clock = clock
        self._jitter = jitter
        self._inflight: dict[int, tuple[object, float]] = {}  # mid → (token, sent at)
        self._deliveries: list[Delivery] = []
        self._connected = False
        self._stopping = False
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._last_progress = clock()
        self._next_connect: float | None = None  # when to (re)connect; None: connected or connecting
        self._attempt_at = 0.0  # the last connection attempt, to time out a missing CONNACK
        self._delay = 0.0  # current backoff; 0: the next wait is reconnect_min_s
        self._broken: str | None = None  # why the client must be rebuilt (an exception out of paho)
        self._max_packet: int | None = None  # the broker's Maximum Packet Size (CONNACK, MQTT v5)
        self._connected_at = 0.0
        self._deaths = 0  # consecutive short connections that died with messages in flight
        self._isolate_pending: str | None = None  # why the next ``wait`` must rebuild the client
        self._isolating = 0  # > 0: one message at a time, for this many more deliveries
        self._subscriptions: list[str] = []  # (re)subscribed on every connection
        self._messages: list[tuple[str, bytes]] = []  # received, until ``take_messages``
        # topic filter → handler, and whether it sees only retained messages (those the broker sends on
        # subscribing, with the retain flag; live ones are forwarded without it)
        self._handlers: list[tuple[str, Callable[[str, bytes], None], bool]] = []

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Build the client; the first connection attempt happens in the next ``wait``."""
        self._stopping = False
        for warning in security_warnings(self.settings):
            log.warning("mqtt: %s", warning)
        self._client = self._make_client()
        self._next_connect = self._clock()

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        self._generation += 1
        gen = self._generation
        protocol = mqtt.MQTTv5 if s.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=protocol
        )
        # Our own window (max_inflight) bounds what paho holds. paho's limit is set to 0 ("none"): with a
        # limit, paho scans every in-flight message on each PUBACK (O(window) per message).
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.connect_timeout = s.connect_timeout_s
        # An external event loop (ours): paho then queues what publish() produces instead of one send()
        # per message, and ``wait`` writes the whole batch at once; per message that roughly halves the
        # cost of publishing (fewer syscalls and broker wake-ups).
        client.on_socket_register_write = _ignore_socket
        if s.broker.username:
            client.username_pw_set(s.broker.username, s.broker.password)
        if uses_tls(s):
            try:
                client.tls_set(
                    ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file, cert_reqs=ssl.CERT_REQUIRED
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise MqttError(f"mqtt: TLS setup failed: {exc}") from None
            if s.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(s.status_topic, OFFLINE, qos=1, retain=True)
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(gen, c, rc, p)
        client.on_disconnect = lambda c, u, f, rc, p: self._on_disconnect(gen, rc)
        client.on_publish = lambda c, u, mid, rc, p: self._on_puback(gen, mid, rc)
        client.on_message = lambda c, u, m: self._on_message(gen, m)
        # Stores host, port and keepalive only; the (blocking, bounded) connect is ``_connect``.
        client.connect_async(s.broker.host, s.broker.port, keepalive=s.keepalive_s)
        return client

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish a retained "offline", wait for its PUBACK briefly, then disconnect cleanly."""
        self._stopping = True
        client = self._client
        if client is None:
            return
        deadline = self._clock() + timeout_s
        if self._connected and self._broken is None:
            try:
                info = client.publish(self.settings.status_topic, OFFLINE, qos=1, retain=True)
                while self._connected and not info.is_published() and self._clock() < deadline:
                    self._service(client, 0.05, None)
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt: could not publish offline status: %s", exc)
        try:
            client.disconnect()  # queued; paho closes the socket once DISCONNECT is written
            while client.socket() is not None and client.want_write() and self._clock() < deadline:
                self._service(client, 0.05, None)
        except Exception as exc:  # a broken client may fail any call; it is discarded anyway
            log.debug("mqtt: disconnect failed: %s", exc)
        self._close(client)
        self._connected = False

    def subscribe(
        self, topic: str, handler: Callable[[str, bytes], None] | None = None, retained_only: bool = False
    ) -> None:
        """Receive ``topic`` (QoS 1) on this and every later connection; see ``take_messages``. With
        ``handler``, messages matching it go to ``handler(topic, payload)`` instead (in the owner thread,
        inside ``wait``); with ``retained_only`` too, only the retained messages the broker sends when the
        subscription is made (at every connection), never the live ones."""
        self._subscriptions.append(topic)
        if handler is not None:
            self._handlers.append((topic, handler, retained_only))
        if self._connected and self._client is not None:
            self._client.subscribe(topic, qos=1)

    def take_messages(self) -> list[tuple[str, bytes]]:
        """Messages received on subscribed topics since the last call, oldest first."""
        out, self._messages = self._messages, []
        return out

    def _on_message(self, gen: int, msg: mqtt.MQTTMessage) -> None:
        if gen != self._generation:
            return
        for topic_filter, handler, retained_only in self._handlers:
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                if retained_only and not msg.retain:
                    return
                try:
                    handler(msg.topic, bytes(msg.payload))
                except Exception as exc:  # one bad message must not stop the client
                    log.error("mqtt: handling a message on %s failed: %s", msg.topic[:200], exc)
                return
        if len(self._messages) < 1000:
            self._messages.append((msg.topic, bytes(msg.payload)))

    # -- callbacks (run in the owner thread, inside paho calls made by this class) -------------------------

    def _on_connect(self, gen: int, client: mqtt.Client, rc: mqtt.ReasonCode, props: object = None) -> None:
        if gen != self._generation:
            return
        if rc.is_failure:  # paho then closes the socket and reports a disconnect: that schedules a retry
            log.warning("mqtt: broker %s refused the connection: %s", self._url, rc)
            return
        self._max_packet = getattr(props, "MaximumPacketSize", None)
        self._connected_at = self._clock()
        client.publish(self.settings.status_topic, ONLINE, qos=1, retain=True)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._connected = True
        self._delay = 0.0
        self._next_connect = None
        self._last_progress = self._clock()
        self.stats.connects += 1
        if self.settings.tls_insecure and uses_tls(self.settings):  # at every connect: never forgotten
            log.warning(
                "mqtt: connected to %s (%s) WITHOUT checking the broker's host name (mqtt.tls_insecure)",
                self._url,
                rc,
            )
        else:
            log.info("mqtt: connected to %s (%s)", self._url, rc)

    def _on_disconnect(self, gen: int, rc: mqtt.ReasonCode) -> None:
        if gen != self._generation:
            return
        was = self._connected
        self._connected = False
        if self._stopping:
            return
        if was and self._inflight:
            short = self._clock() - self._connected_at <= self.settings.ack_timeout_s
            self._deaths = self._deaths + 1 if short else 1
            if self._deaths >= 2 or self._isolating:
                self._isolate_pending = str(rc)
        wait = self._schedule_connect()
        if was:
            self.stats.disconnects += 1
            log.warning(
                "mqtt: disconnected from %s (%s); reconnecting in %.1f s",
                self._url,
                rc,
                wait,
            )

    def _on_puback(self, gen: int, mid: int, rc: mqtt.ReasonCode) -> None:
        if gen != self._generation:
            return
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # the availability status, or a message of a discarded client
        self._last_progress = self._clock()
        if rc.is_failure and rc.value in POISON_REASONS:
            self.stats.refused += 1
            self._deliveries.append(Delivery(entry[0], "poison", f"broker PUBACK: {rc}"))
        elif rc.is_failure:  # reason code >= 0x80
            name = str(rc)
            self.stats.refused += 1
            self.stats.refusals_by_reason[name] = self.stats.refusals_by_reason.get(name, 0) + 1
            self._deliveries.append(Delivery(entry[0], "refused", name))
        else:
            self.stats.delivered += 1
            self._deliveries.append(Delivery(entry[0], "ok", str(rc)))
        if self._isolating:  # any PUBACK: the connection survived this message
            self._isolating -= 1
            if not self._isolating:
                self._deaths = 0
                log.info("mqtt: isolation over, publishing with the full window again")

    # -- owner thread ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def can_publish(self) -> bool:
        limit = 1 if self._isolating else self.settings.max_inflight
        return self._connected and self._broken is None and len(self._inflight) < limit

    def wait(self, timeout: float, wake_fd: int | None = None) -> None:
        """Block up to ``timeout`` s for broker traffic or a readable ``wake_fd`` (the owner's), then do
        the network work due: read (PUBACKs, CONNACK), write what is pending, keepalive, reconnect.
        Deliveries decided here are returned by the next ``poll``; ``wake_fd`` is left for the owner."""
        if self._isolate_pending is not None and not self._stopping and self._client is not None:
            self._isolate(self._client, self._isolate_pending)
        client = self._client
        if client is None or self._broken is not None or self._stopping:
            self._sleep(timeout, wake_fd)
            return
        if self._next_connect is not None:
            now = self._clock()
            if now >= self._next_connect:
                self._connect(client, now)
            if self._next_connect is not None:  # wake up in time for the next attempt
                timeout = min(timeout, max(0.0, self._next_connect - self._clock()))
        self._service(client, timeout, wake_fd)

    def _sleep(self, timeout: float, wake_fd: int | None) -> None:
        if timeout > 0:
            if wake_fd is None:
                time.sleep(timeout)
            else:
                select.select([wake_fd], [], [], timeout)

    def _service(self, client: mqtt.Client, timeout: float, wake_fd: int | None) -> None:
        try:
            self._flush(client)
            sock = client.socket()
            if sock is None:
                self._sleep(timeout, wake_fd)
                return
            rlist: list = [sock] if wake_fd is None else [sock, wake_fd]
            wlist: list = [sock] if client.want_write() else []  # the kernel buffer was full
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0  # TLS bytes decrypted already
            try:
                readable, _, _ = select.select(rlist, wlist, [], 0.0 if pending else timeout)
            except (OSError, ValueError) as exc:  # the descriptor was closed under paho
                self._fail(f"select failed: {exc}")
                return
            if pending or sock in readable:
                client.loop_read()
                _ack_now(client.socket())
            if client.socket() is not None:
                client.loop_misc()
            self._flush(client)  # replies queued while reading (the "online" status, keepalive)
        except Exception as exc:  # whatever paho raised, this client is not trusted any more
            self._fail(f"paho raised {type(exc).__name__}: {exc}")

    @staticmethod
    def _flush(client: mqtt.Client) -> None:
        """Write what ``publish`` queued since the last call, in one burst (as far as the socket takes it)."""
        if client.want_write() and client.socket() is not None:
            client.loop_write()

    def _connect(self, client: mqtt.Client, now: float) -> None:
        """One connection attempt (blocking up to connect_timeout_s); CONNACK arrives in a later ``wait``."""
        if client.socket() is not None:
            log.warning(
                "mqtt: no CONNACK from %s within %.0f s; connecting again",
                self._url,
                now - self._attempt_at,
            )
        self._attempt_at = now
        self._next_connect = now + self.settings.connect_timeout_s + self.settings.ack_timeout_s
        try:
            client.reconnect()
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, TLS handshake or certificate
            wait = self._schedule_connect()
            log.warning(
                "mqtt: cannot connect to %s: %s; retrying in %.1f s",
                self._url,
                exc,
                wait,
            )
        except Exception as exc:  # anything else means paho itself is in trouble
            self._fail(f"paho raised {type(exc).__name__} while connecting: {exc}")

    def _schedule_connect(self) -> float:
        """Exponential backoff with jitter: each wait is 50..100 % of min_s · 2^n, capped at max_s."""
        s = self.settings
        self._delay = min(s.reconnect_max_s, self._delay * 2 if self._delay else s.reconnect_min_s)
        wait = self._delay * (0.5 + 0.5 * self._jitter())
        self._next_connect = self._clock() + wait
        return wait

    def _fail(self, why: str) -> None:
        if self._broken is None:
            self._broken = why
            self._connected = False

    def publish(self, topic: str, payload: bytes, token: object, retain: bool = False) -> bool:
        """Hand one QoS 1 message to paho (written by the next ``wait``); its fate comes back from ``poll``.
        False: not accepted now (stopping, or the client is broken). Unpublishable: never will be."""
        client = self._client
        if client is None or self._stopping or self._broken is not None:
            return False
        if token is None and self._isolating:
            return False  # untracked messages wait: only the one under test may be in flight
        problem = topic_problem(topic)
        if problem is None and self._max_packet is not None:
            size = publish_packet_size(topic, payload, self.settings.protocol == "5")
            if size > self._max_packet:
                problem = (
                    f"a packet of {size} bytes, over the broker's maximum packet size {self._max_packet}"
                )
        if problem is not None:
            raise Unpublishable(problem)
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
        except ValueError as exc:  # whatever else paho finds wrong with this message (UnicodeError too)
            raise Unpublishable(f"paho refused it: {exc}") from None
        except Exception as exc:  # paho's own trouble: the watchdog rebuilds the client
            self._fail(f"paho raised {type(exc).__name__} in publish: {exc}")
            return False
        # Any rc but "queue full" means paho keeps the message and (re)sends it when connected.
        if info.rc == _QUEUE_FULL:
            return False
        now = self._clock()
        if not self._inflight:
            self._last_progress = now
        self._inflight[info.mid] = (token, now)
        self.stats.published += 1
        return True

    def poll(self) -> list[Delivery]:
        """The deliveries decided (PUBACKs handled, or retries after a rebuild) since the last call."""
        if not self._deliveries:
            return []
        out, self._deliveries = self._deliveries, []
        return out

    def check_health(self) -> list[Delivery]:
        """Rebuild a broken or stalled client; returns ``retry`` deliveries for what was in flight."""
        client = self._client
        if self._stopping or client is None:
            return []
        quiet = self._connected and not self._inflight
        if self._isolating and quiet and self._clock() - self._connected_at > self.settings.ack_timeout_s:
            self._isolating = self._deaths = 0  # nothing left to test
            log.info("mqtt: isolation over (a quiet connection), publishing with the full window again")
        why = self._broken
        if why is None and self._connected and client.socket() is None:
            why = "the client lost its socket without reporting a disconnect"
        if (
            why is None
            and self._inflight
            and self._connected
            and self._clock() - self._last_progress > self.settings.ack_timeout_s
        ):
            why = f"no PUBACK for {self.settings.ack_timeout_s:g} s"
        if why is None:
            return []
        self.stats.loop_restarts += 1
        log.error("mqtt: %s; rebuilding the client (restart %d)", why, self.stats.loop_restarts)
        self._connected = False
        self._broken = None
        self._generation += 1  # the old client's callbacks (its disconnect below) are ignored from now on
        try:
            client.disconnect()  # a clean DISCONNECT if the socket still takes it, else the Will goes out
            self._flush(client)
        except Exception as exc:  # a broken client may fail any call; it is discarded anyway
            log.debug("mqtt: disconnect of the old client failed: %s", exc)
        self._close(client)
        retries = [Delivery(tok, "retry", why) for tok, _ in self._inflight.values()]
        self.stats.retried += len(retries)
        self._inflight.clear()
        self._client = self._make_client()
        self._schedule_connect()
        return retries

    def _isolate(self, client: mqtt.Client, why: str) -> None:
        """After repeated deaths with messages in flight: a new client (paho's resend queue goes with the
        old one); the messages come back to the owner, one of them as ``suspect`` when it was alone."""
        self._isolate_pending = None
        alone = self._isolating and len(self._inflight) == 1
        if not self._isolating:
            log.warning(
                "mqtt: the connection to %s died %d times with messages in flight (%s); sending one message"
                " at a time to find one the broker refuses",
                self.settings.broker.redacted(),
                self._deaths,
                why,
            )
        self._isolating = max(self._isolating, len(self._inflight))
        self._generation += 1  # the old client's callbacks are ignored from now on
        self._close(client)
        status = "suspect" if alone else "retry"
        reason = f"the broker closed the connection after it was sent ({why})"
        back = [Delivery(tok, status, reason) for tok, _ in self._inflight.values()]
        self.stats.retried += len(back)
        self._deliveries.extend(back)
        self._inflight.clear()
        self._client = self._make_client()

    @staticmethod
    def _close(client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class RefusalLog:
    """Broker refusals (an ACL, a quota) as one WARNING per reason per ``interval_s``, like the pipeline's
    dropped packets: a refused node is retried every minute, and one line per frame and retry would bury
    the log. The first refusal of a reason is logged at once; later ones are counted (a DEBUG line each)
    and summarised with the latest node and counter once the interval has passed."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._pending: dict[str, tuple[int, int, int]] = {}  # reason → (count, latest node, latest fcnt)

    def refused(self, node_id: int, fcnt: int, reason: str, retry_s: float) -> None:
        log.debug("node %08x fcnt %d: broker refused the publish (%s)", node_id, fcnt, reason)
        count = self._pending.get(reason, (0, 0, 0))[0] + 1
        self._pending[reason] = (count, node_id, fcnt)
        last = self._last.get(reason)
        if last is None or self._clock() - last >= self.interval_s:
            self._emit(reason, retry_s)

    def flush(self, retry_s: float) -> None:
        """Summarise what is due (the core calls it with its stats tick)."""
        now = self._clock()
        for reason in [r for r in self._pending if now - self._last.get(r, -1e18) >= self.interval_s]:
            self._emit(reason, retry_s)

    def _emit(self, reason: str, retry_s: float) -> None:
        count, node_id, fcnt = self._pending.pop(reason)
        self._last[reason] = self._clock()
        log.warning(
            "node %08x fcnt %d: broker refused %d publish(es) (%s) in %.0f s; kept, retried every %.0f s",
            node_id,
            fcnt,
            count,
            reason,
            self.interval_s,
            retry_s,
        )
