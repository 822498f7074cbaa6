"""The MQTT publisher: the only module that imports paho-mqtt.

Threads: paho's network loop runs in a thread this module owns (``loop_forever``, which reconnects with
backoff); everything else (``publish``, ``poll``, ``check_health``, ``stop``) is called by ONE owner
thread. paho callbacks only enqueue, so no lock of ours is ever taken inside paho.

Delivery is judged by the PUBACK reason code: ≥ 0x80 (e.g. 0x87 Not authorized from an ACL, MQTT v5
only) is *refused*, never counted delivered; 0x10 "No matching subscribers" is a success. paho keeps
QoS 1 messages in RAM only, so the caller (the outbox) must keep them until ``Delivery.ok``.

The loop's health is watched, not trusted: a dead network thread, or PUBACKs missing for
``ack_timeout_s`` while connected, makes ``check_health`` rebuild the client; every in-flight message
then comes back as a ``retry`` delivery so the owner republishes it from the outbox.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.errors import GatewayError
from gateway.sinks.url import BrokerUrl

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


class MqttError(GatewayError):
    reason = "mqtt"


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


@dataclass(frozen=True, slots=True)
class Delivery:
    """The fate of one publish: ``ok`` (PUBACK success), ``refused`` (reason ≥ 0x80) or ``retry``."""

    token: object
    status: str  # "ok" | "refused" | "retry"
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
    """QoS 1 publisher with an availability topic, reason-code checks and a loop watchdog."""

    def __init__(self, settings: MqttSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.stats = MqttStats()
        self._clock = clock
        self._events: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._inflight: dict[int, tuple[object, float]] = {}  # mid → (token, sent at)
        self._connected = threading.Event()
        self._stopping = False
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._last_progress = clock()
        self._wake: Callable[[], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def set_wakeup(self, wake: Callable[[], None]) -> None:
        """Called (from the network thread) whenever a PUBACK or connection change is queued."""
        self._wake = wake

    def start(self) -> None:
        self._stopping = False
        self._client = self._make_client()
        self._start_thread()

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
        client.reconnect_delay_set(max(1, round(s.reconnect_min_s)), max(1, round(s.reconnect_max_s)))
        if s.broker.username:
            client.username_pw_set(s.broker.username, s.broker.password)
        if s.broker.tls or s.ca_file or s.cert_file:
            try:
                client.tls_set(
                    ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file, cert_reqs=ssl.CERT_REQUIRED
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise MqttError(f"mqtt: TLS setup failed: {exc}") from None
            if s.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(s.status_topic, OFFLINE, qos=1, retain=True)
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(gen, c, rc)
        client.on_disconnect = lambda c, u, f, rc, p: self._on_disconnect(gen, rc)
        client.on_publish = lambda c, u, mid, rc, p: self._event(("puback", gen, mid, rc))
        client.connect_async(s.broker.host, s.broker.port, keepalive=s.keepalive_s)
        return client

    def _start_thread(self) -> None:
        client = self._client
        assert client is not None
        self._thread = threading.Thread(target=self._run_loop, args=(client,), name="mqtt-loop", daemon=True)
        self._thread.start()

    def _run_loop(self, client: mqtt.Client) -> None:
        try:
            client.loop_forever(retry_first_connection=True)
        except Exception as exc:  # the watchdog restarts the loop; log why it died
            log.error("mqtt: network loop died: %s: %s", type(exc).__name__, exc)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish a retained "offline", wait for it briefly, disconnect and end the network thread."""
        self._stopping = True
        client, thread = self._client, self._thread
        if client is None:
            return
        if self._connected.is_set():
            try:
                info = client.publish(self.settings.status_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt: could not publish offline status: %s", exc)
        client.disconnect()
        if thread is not None:
            thread.join(timeout_s)
        self._connected.clear()

    # -- callbacks (network thread: enqueue only) ---------------------------------------------------------

    def _event(self, ev: tuple) -> None:
        self._events.put(ev)
        wake = self._wake
        if wake is not None:
            wake()

    def _on_connect(self, gen: int, client: mqtt.Client, rc: mqtt.ReasonCode) -> None:
        if rc.is_failure:
            self._event(("connect_failed", gen, str(rc)))
            return
        client.publish(self.settings.status_topic, ONLINE, qos=1, retain=True)
        if gen == self._generation:
            self._connected.set()
        self._event(("connected", gen, str(rc)))

    def _on_disconnect(self, gen: int, rc: mqtt.ReasonCode) -> None:
        if gen == self._generation:
            self._connected.clear()
        self._event(("disconnected", gen, str(rc)))

    # -- owner thread ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def can_publish(self) -> bool:
        return self._connected.is_set() and len(self._inflight) < self.settings.max_inflight

    def publish(self, topic: str, payload: bytes, token: object, retain: bool = False) -> bool:
        """Hand one QoS 1 message to paho; its fate comes back from ``poll``. False: not accepted now."""
        client = self._client
        if client is None or self._stopping:
            return False
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False
        if not self._inflight:
            self._last_progress = self._clock()
        self._inflight[info.mid] = (token, self._clock())
        self.stats.published += 1
        return True

    def poll(self) -> list[Delivery]:
        """Drain queued network events; returns the deliveries decided since the last call."""
        out: list[Delivery] = []
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return out
            kind, gen = ev[0], ev[1]
            if kind == "puback":
                if gen != self._generation:
                    continue
                entry = self._inflight.pop(ev[2], None)
                if entry is None:
                    continue
                self._last_progress = self._clock()
                rc: mqtt.ReasonCode = ev[3]
                if rc.is_failure:
                    name = str(rc)
                    self.stats.refused += 1
                    self.stats.refusals_by_reason[name] = self.stats.refusals_by_reason.get(name, 0) + 1
                    out.append(Delivery(entry[0], "refused", name))
                else:
                    self.stats.delivered += 1
                    out.append(Delivery(entry[0], "ok", str(rc)))
            elif kind == "connected" and gen == self._generation:
                self.stats.connects += 1
                self._last_progress = self._clock()
                log.info("mqtt: connected to %s (%s)", self.settings.broker.redacted(), ev[2])
            elif kind == "connect_failed" and gen == self._generation:
                log.warning(
                    "mqtt: broker %s refused the connection: %s", self.settings.broker.redacted(), ev[2]
                )
            elif kind == "disconnected" and gen == self._generation and not self._stopping:
                self.stats.disconnects += 1
                log.warning(
                    "mqtt: disconnected from %s (%s); reconnecting", self.settings.broker.redacted(), ev[2]
                )

    def check_health(self) -> list[Delivery]:
        """Restart a dead or stalled network loop; returns ``retry`` deliveries for what was in flight."""
        if self._stopping or self._client is None:
            return []
        thread_dead = self._thread is None or not self._thread.is_alive()
        stalled = (
            bool(self._inflight)
            and self._connected.is_set()
            and self._clock() - self._last_progress > self.settings.ack_timeout_s
        )
        if not (thread_dead or stalled):
            return []
        why = "the network thread died" if thread_dead else f"no PUBACK for {self.settings.ack_timeout_s:g} s"
        self.stats.loop_restarts += 1
        log.error("mqtt: %s; restarting the client (restart %d)", why, self.stats.loop_restarts)
        old, old_thread = self._client, self._thread
        self._connected.clear()
        try:
            old.disconnect()
        except Exception as exc:  # a broken client may fail any call; it is discarded anyway
            log.debug("mqtt: disconnect of the old client failed: %s", exc)
        if old_thread is not None and old_thread.is_alive():
            old_thread.join(2.0)
        retries = [Delivery(tok, "retry", why) for tok, _ in self._inflight.values()]
        self.stats.retried += len(retries)
        self._inflight.clear()
        self._client = self._make_client()
        self._start_thread()
        return retries
