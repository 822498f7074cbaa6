"""The gateway's core loop: one thread owns the decoder, the outbox and publishing.

Thread ownership:
- the radio thread only calls ``submit(packet)`` (a deque append, and a wake-up byte when the core
  may be asleep); ``wake`` (stop requests, signal handlers) writes the wake-up byte too;
- the core thread (``run``) does everything else, MQTT included: it sleeps in one select() over the
  broker socket and the wake fd (``MqttSink.wait``), reads PUBACKs and (re)connects there, decodes,
  stores (group commit), publishes (queued; the next wait writes the batch), runs the MQTT client watchdog,
  stats, re-decoding and sd_notify. There is no paho network thread: with one, publish() and PUBACK
  handling contended for paho's lock and the GIL at every frame.

Publishing order is outbox order (oldest first). Committed frames are kept in a bounded in-memory
queue; beyond it (a long broker outage, a backlog after restart) they are paged in from SQLite.

One message can never stop the others: a poison message (refused for its own content: see
gateway.sinks.mqtt) is parked in the outbox, counted (``parked``) and logged once, and the queue moves on;
an ACL refusal is held in RAM and retried after ``refused_retry_s``. Rows the operator requeues
(``lora-gw outbox retry``) are taken back every ``redecode_interval_s``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.frames import DecodedFrame, PayloadCodec
from gateway.pipeline.message import StoredFrame
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.render import Renderer
from gateway.radio.packet import RxPacket
from gateway.service.notify import Notifier
from gateway.sinks.mqtt import Delivery, MqttSink, RefusalLog, Unpublishable
from gateway.sinks.outbox import Outbox

if TYPE_CHECKING:  # the downlink code is imported only when [downlink] is on (gateway.service.downlink)
    from gateway.downlink.manager import Downlinker, Uplink

log = logging.getLogger(__name__)


class Waker:
    """A descriptor other threads make readable to end the core's select() early.

    ``wake`` writes a byte only if none was written since the last ``clear`` (one syscall per core
    iteration at most, not one per packet); ``clear`` drains before it re-arms, so a wake racing with
    it is never lost: the core reads its queue after ``clear``."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._sent = False

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        if not self._sent:
            self._sent = True
            with contextlib.suppress(OSError):  # full (a byte is already there) or closed at shutdown
                self._w.send(b"\0")

    def clear(self) -> None:
        # Always read (one non-blocking call): a byte written after an earlier clear already reset the
        # flag would otherwise stay and make every select() return at once.
        with contextlib.suppress(OSError):
            self._r.recv(64)
        self._sent = False

    def close(self) -> None:
        self._r.close()
        self._w.close()


@dataclass(frozen=True, slots=True)
class CoreSettings:
    stats_interval_s: float = 60.0
    redecode_interval_s: float = 60.0
    expire_interval_s: float = 300.0
    refused_retry_s: float = 60.0  # a publish refused by the broker (ACL) is retried this much later
    ready_cap: int = 4096  # committed frames held in RAM for publishing; the rest stays in SQLite
    drain_batch: int = 1024
    health_interval_s: float = 1.0
    shutdown_flush_s: float = 3.0
    radio_stall_s: float = 30.0  # no radio heartbeat for this long: stop feeding the systemd watchdog
    retain_telemetry: bool = False  # [mqtt] retain_telemetry: telemetry published retained


class Core:
    def __init__(
        self,
        pipeline: Pipeline,
        outbox: Outbox,
        sink: MqttSink,
        renderer: Renderer,
        settings: CoreSettings | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        radio_heartbeat: Callable[[], float] | None = None,
        on_published: Callable[[str, bytes], None] | None = None,
        downlink: Downlinker | None = None,
        observer: Any = None,
    ) -> None:
        """``observer`` (gateway.service.operations.Operations or None) sees every packet's fate and every
        published message, runs in ``step`` (``tick``) and adds to the stats (``stats``)."""
        self.pipeline = pipeline
        self.outbox = outbox
        self.sink = sink
        self.renderer = renderer
        self.settings = settings or CoreSettings()
        self.notifier = notifier or Notifier({})
        self._clock = clock
        self._radio_heartbeat = radio_heartbeat
        self._on_published = on_published
        self.downlink = downlink  # acknowledgements and commands, decided after the commit
        if downlink is not None:
            downlink.wake = self.wake
        self._uplinks: dict[int, Uplink] = {}  # outbox row id → what its downlink window needs
        self._packet: RxPacket | None = None  # the packet being ingested
        if downlink is not None:
            from gateway.downlink.manager import Uplink, repeated_uplink

            self._uplink, self._repeated_uplink = Uplink, repeated_uplink
            pipeline.on_control = self._control
            pipeline.on_duplicate = self._repeated
        self.observer = observer
        self.packets: deque[tuple[RxPacket, float]] = deque()  # appended by the radio thread only
        self._waker = Waker()
        self._ready: deque[StoredFrame] = deque()
        self._spilled = True  # start by paging in whatever the last run left behind
        self._loaded_upto = 0
        self._held: list[tuple[float, StoredFrame]] = []  # refused (ACL): retried at the time given
        self._strikes: dict[int, int] = {}  # row id → connections that died with it alone in flight
        self._waiting_queued: set[int] = set()
        self._waiting_cursor = 0
        self._rx_time: dict[int, float] = {}
        self.latencies_ms: deque[float] = deque(maxlen=20000)
        self.published = 0
        self.raw_published = 0
        self._disk_full = False  # last disk-full state reported (systemd status, stats topic)
        self.refused = 0
        self.refusal_log = RefusalLog(self.settings.refused_retry_s, clock)  # 1 WARNING/reason/interval
        self.parked = 0  # poison messages parked by this run
        self.started_s = clock()
        now = clock()
        self._next_health = now
        self._next_stats = now + self.settings.stats_interval_s
        self._next_redecode = now + self.settings.redecode_interval_s
        self._next_requeue = now  # rows requeued while the service was down: at once
        self._next_expire = now
        wd = self.notifier.watchdog_interval_s
        self._next_watchdog = now if wd else float("inf")

    # -- other threads ----------------------------------------------------------------------------------

    def submit(self, packet: RxPacket) -> None:
        """Called by the radio thread for every received packet (the latency clock starts here)."""
        self.packets.append((packet, self._clock()))
        self._waker.wake()

    def wake(self) -> None:
        """Make ``step`` return promptly (a stop request); safe from other threads and signal handlers."""
        self._waker.wake()

    # -- the core thread --------------------------------------------------------------------------------

    def run(self, stop: threading.Event, before_shutdown: Callable[[], None] | None = None) -> None:
        """Loop until ``stop`` is set, then shut down cleanly (offline status, outbox committed).
        ``before_shutdown`` stops the radio, so that everything it heard is stored before the end."""
        try:
            while not stop.is_set():
                self.step(self._timeout())
        finally:
            try:
                if before_shutdown is not None:
                    before_shutdown()
            finally:
                self.shutdown()

    def _timeout(self) -> float:
        now = self._clock()
        t = min(self._next_health, self._next_stats, self._next_redecode, self._next_watchdog) - now
        c = self.outbox.seconds_to_commit()
        if c is not None:
            t = min(t, c)
        if self._ready and self.sink.can_publish:  # (queued packets: ``step`` does not wait either)
            t = 0.0
        return max(0.0, min(t, 0.5))

    def step(self, timeout: float = 0.0) -> None:
        """One iteration: wait for the broker or a wake-up (network work, PUBACKs), ingest queued packets,
        commit when due, handle deliveries, publish, housekeeping."""
        if self.packets:
            timeout = 0.0
        self.sink.wait(timeout, self._waker.fileno())
        self._waker.clear()  # before reading the queue: a packet submitted after this wakes the next wait
        if self.downlink is not None:
            self.downlink.poll_results()  # before new packets: a "sent" precedes the answer it drew
        packets = self.packets
        for _ in range(min(len(packets), self.settings.drain_batch)):
            self._ingest(packets.popleft())
        self._queue_stored(self.outbox.maybe_commit())
        self._handle(self.sink.poll())
        if self.downlink is not None:
            self.downlink.poll_results()
            while self.downlink.statuses and self.sink.connected:
                self._publish_untracked(*self.downlink.statuses.popleft())
        now = self._clock()
        if now >= self._next_health:
            self._next_health = now + self.settings.health_interval_s
            self._handle(self.sink.check_health())
            self._unpark(now)
            self.outbox.check_space()
        if self.outbox.disk_full != self._disk_full:
            self._disk_full = self.outbox.disk_full
            self.publish_stats()  # say so now, not at the next interval
        self._publish()
        self._housekeeping(now)

    def _ingest(self, item: tuple[RxPacket, float]) -> None:
        packet, t0 = item
        self._packet = packet  # for ``_control``, which the pipeline calls from ``process``
        result = self.pipeline.process(packet)
        if self.observer is not None:
            self.observer.packet(packet, None if result is None else result[0])
        if result is None:
            return
        accepted, decoded = result
        rid = self.outbox.add(accepted)
        self.pipeline.accept(decoded)
        if len(self._rx_time) >= 100_000:  # a long outage: latency samples are not worth the memory
            self._rx_time.clear()
        self._rx_time[rid] = t0
        if self.downlink is not None and decoded.format.value == "frame" and len(self._uplinks) < 100_000:
            self._uplinks[rid] = self._uplink(
                decoded.node_id, decoded.fcnt, decoded.ack_requested, packet.monotonic_s, packet.freq_hz
            )

    def _control(self, frame: DecodedFrame) -> None:
        """A verified uplink that is not telemetry: a node-info report, or an acknowledgement."""
        assert self.downlink is not None
        if frame.codec is PayloadCodec.INFO:
            # stored (committed) first; then its receive window, like any uplink's: a queued command,
            # or the acknowledgement it asked for
            self.downlink.report(frame.node_id, frame.payload, frame.fcnt, frame.counter_epoch)
            pkt = self._packet
            if pkt is not None:
                up = self._uplink(
                    frame.node_id, frame.fcnt, frame.ack_requested, pkt.monotonic_s, pkt.freq_hz
                )
                self.downlink.committed(up)
        else:
            self.downlink.control(frame.node_id, frame.frame_type, frame.payload)

    def _repeated(self, packet: RxPacket) -> None:
        """A node repeats a frame whose acknowledgement it missed: acknowledge it again, unless the first
        copy is still waiting for its commit (its acknowledgement follows that)."""
        up = self._repeated_uplink(packet.payload, packet.monotonic_s, packet.freq_hz)
        if up is None or self.downlink is None:
            return
        if any(u.node_id == up.node_id for u in self._uplinks.values()):
            return
        self.downlink.committed(up)

    def _queue_stored(self, stored: list[StoredFrame]) -> None:
        if not stored:
            return
        if self._uplinks:  # committed: now an acknowledgement may go (an acknowledged frame is never lost)
            for s in stored:
                up = self._uplinks.pop(s.row_id, None)
                if up is not None and self.downlink is not None:
                    self.downlink.committed(up)
        if not self._spilled and len(self._ready) + len(stored) <= self.settings.ready_cap:
            self._ready.extend(stored)
            self._loaded_upto = stored[-1].row_id
        else:
            self._spilled = True

    def _refill(self) -> None:
        if self._ready or not self._spilled:
            return
        cap = self.settings.ready_cap
        rows = self.outbox.load(self._loaded_upto, cap)
        if rows:
            self._ready.extend(rows)
            self._loaded_upto = rows[-1].row_id
        if len(rows) < cap:
            self._spilled = False

    def _publish(self) -> None:
        sink = self.sink
        while sink.can_publish:
            if not self._ready:
                self._refill()
                if not self._ready:
                    return
            stored = self._ready.popleft()
            msg = self.renderer.render(stored)
            if msg is None:  # waiting for a model that is still missing
                self._waiting_queued.discard(stored.row_id)
                continue
            # Gap estimates go out before the frame that revealed the gap: the last message on the topic is
            # then the newest one, which is what a consumer that keeps a state (Home Assistant) shows.
            for extra in self.renderer.take_extras():
                self._publish_untracked(extra.topic, extra.payload)
            try:
                retain = self.settings.retain_telemetry and msg.kind == "telemetry"
                accepted = sink.publish(msg.topic, msg.payload, (stored, msg.kind), retain=retain)
            except Unpublishable as exc:
                self._poison(stored, exc.message)
                continue
            if not accepted:
                self._ready.appendleft(stored)
                return
            if self._on_published is not None:
                self._on_published(msg.topic, msg.payload)
            if self.observer is not None:
                self.observer.published(msg.topic, msg.payload, stored)

    def publish_extra(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Publish a message that is not a stored frame (discovery, availability): False if the broker is
        not connected or the window is full (the caller announces again later)."""
        if not self.sink.connected:
            return False
        return self._publish_untracked(topic, payload, retain)

    def _publish_untracked(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Stats and gap estimates: not stored, so a refusal is only logged."""
        try:
            return self.sink.publish(topic, payload, None, retain=retain)
        except Unpublishable as exc:
            log.warning("mqtt: cannot publish on %s: %s", topic[:200], exc.message)
            return False

    def _poison(self, stored: StoredFrame, reason: str) -> None:
        """Park a message that can never be published as it is; the queue goes on without it."""
        rid = stored.row_id
        self.parked += 1
        self.outbox.park(rid, reason)
        self._waiting_queued.discard(rid)
        self._rx_time.pop(rid, None)
        log.warning(
            "node %08x fcnt %d: message parked in the outbox, it cannot be published (%s);"
            " see lora-gw outbox list",
            stored.frame.node_id,
            stored.frame.fcnt,
            reason,
        )

    def _handle(self, deliveries: list[Delivery]) -> None:
        retry: list[StoredFrame] = []
        now = self._clock()
        for d in deliveries:
            if not isinstance(d.token, tuple):
                continue  # stats and other untracked messages
            stored, kind = d.token
            rid = stored.row_id
            if d.status == "ok":
                if kind == "raw":
                    self.raw_published += 1
                    self.outbox.mark_waiting(rid)
                else:
                    self.published += 1
                    self.outbox.acknowledge(rid)
                self._waiting_queued.discard(rid)
                self._strikes.pop(rid, None)
                t0 = self._rx_time.pop(rid, None)
                if t0 is not None and 0 <= now - t0 < 3600:
                    self.latencies_ms.append((now - t0) * 1000.0)
            elif d.status == "refused":
                self.refused += 1
                self.refusal_log.refused(
                    stored.frame.node_id, stored.frame.fcnt, d.reason, self.settings.refused_retry_s
                )
                self._held.append((now + self.settings.refused_retry_s, stored))
            elif d.status == "poison":
                self._poison(stored, d.reason)
            elif d.status == "suspect":
                strikes = self._strikes[rid] = self._strikes.get(rid, 0) + 1
                if strikes >= 2:
                    del self._strikes[rid]
                    self._poison(stored, f"{d.reason}, {strikes} times alone")
                else:
                    retry.append(stored)
            else:
                retry.append(stored)
        if retry:
            retry.sort(key=lambda s: s.row_id)
            self._ready.extendleft(reversed(retry))

    def _unpark(self, now: float) -> None:
        if not self._held:
            return
        due = [s for t, s in self._held if t <= now]
        if due:
            self._held = [(t, s) for t, s in self._held if t > now]
            due.sort(key=lambda s: s.row_id)
            self._ready.extendleft(reversed(due))

    def _housekeeping(self, now: float) -> None:
        s = self.settings
        if now >= self._next_watchdog:
            interval = self.notifier.watchdog_interval_s or 1.0
            self._next_watchdog = now + interval
            if self.radio_alive(now):
                self.notifier.watchdog()
            else:
                log.error("radio: no heartbeat for %.0f s; not feeding the systemd watchdog", s.radio_stall_s)
        if now >= self._next_stats:
            self._next_stats = now + s.stats_interval_s
            self.refusal_log.flush(s.refused_retry_s)
            self.publish_stats()
        if now >= self._next_redecode:
            self._next_redecode = now + s.redecode_interval_s
            self._redecode()
        if now >= self._next_requeue:
            self._next_requeue = now + s.redecode_interval_s
            self._take_requeued()
        if now >= self._next_expire:
            self._next_expire = now + s.expire_interval_s
            self.outbox.drop_expired()
        self._forget_dropped()
        if self.observer is not None:
            self.observer.tick(now)

    def _forget_dropped(self) -> None:
        """Frames a size or age bound dropped (counted, logged) must not be published afterwards."""
        upto = self.outbox.dropped_upto
        if upto and self._ready and self._ready[0].row_id <= upto:
            self._ready = deque(s for s in self._ready if s.row_id > upto)

    def radio_alive(self, now: float | None = None) -> bool:
        if self._radio_heartbeat is None:
            return True
        now = self._clock() if now is None else now
        return now - self._radio_heartbeat() < self.settings.radio_stall_s

    def _redecode(self) -> None:
        """Retry frames whose raw form went out while their model was missing."""
        rows = self.outbox.load_waiting(self._waiting_cursor, 1000)
        self._waiting_cursor = rows[-1].row_id if len(rows) == 1000 else 0
        for stored in rows:
            if stored.row_id not in self._waiting_queued:
                self._waiting_queued.add(stored.row_id)
                self._ready.append(stored)

    def _take_requeued(self) -> None:
        """Parked rows the operator requeued: those the pager has passed go to the front of the queue
        (oldest first); the pager reaches the others by itself."""
        rows = self.outbox.take_requeued()
        behind = [r for r in rows if r.row_id <= self._loaded_upto]
        if len(behind) < len(rows):
            self._spilled = True
        if behind:
            self._ready.extendleft(reversed(behind))

    # -- stats --------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

        return {
            "gateway_id": self.renderer.gateway_id,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "uptime_s": round(self._clock() - self.started_s, 1),
            "received": self.pipeline.received,
            "passed": self.pipeline.passed,
            "accepted": self.outbox.stats.stored,  # durable: committed with its counter
            "pending_commit": self.outbox.pending,
            "dropped_disk_full": self.outbox.stats.dropped_disk_full,
            "drops": dict(self.pipeline.drops),
            "control": dict(self.pipeline.control),
            "published": self.published,
            "raw_published": self.raw_published,
            "refused": self.refused,
            "parked": self.parked,
            "backlog": self.outbox.backlog,
            "outbox": self.outbox.stats.as_dict(),
            "history": self.outbox.history.stats.as_dict() if self.outbox.history is not None else None,
            "storage": {
                "disk_full": self.outbox.disk_full,
                "free_mb": self.outbox.free_mb(),
                "min_free_mb": self.outbox.settings.min_free_mb,
            },
            "mqtt": {
                **self.sink.stats.as_dict(),
                "connected": self.sink.connected,
                "inflight": self.sink.inflight,
            },
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
            "model_failures": self.renderer.model_failures,
            "estimated": self.renderer.estimated,
            "models": self.renderer.codec_stats.snapshot() if self.renderer.codec_stats is not None else {},
            **({"downlink": self.downlink.stats()} if self.downlink is not None else {}),
            **(self.observer.stats() if self.observer is not None else {}),
        }

    def status_line(self) -> str:
        line = (
            f"rx {self.pipeline.received}, accepted {self.outbox.stats.stored}, published {self.published}, "
            f"backlog {self.outbox.backlog}, broker {'up' if self.sink.connected else 'down'}"
        )
        if self.outbox.stats.parked:
            line += f", {self.outbox.stats.parked} parked (lora-gw outbox list)"
        if self.outbox.disk_full:
            line += f", DISK FULL: {self.outbox.stats.dropped_disk_full} frames not stored"
        return line

    def publish_stats(self) -> None:
        self.notifier.status(self.status_line())
        if self.sink.connected:
            self._publish_untracked(self.renderer.stats_topic, json.dumps(self.stats()).encode())

    # -- shutdown -----------------------------------------------------------------------------------------

    def drain(self) -> None:
        """Ingest everything queued and commit it (the radio has stopped)."""
        while self.packets:
            self._ingest(self.packets.popleft())
        self._queue_stored(self.outbox.commit())

    def shutdown(self) -> None:
        """Commit, give in-flight publishes a moment, publish "offline", close the outbox."""
        self.notifier.stopping("flushing the outbox")
        try:
            self.drain()
            self.publish_stats()  # the final figures, after the last commit
            deadline = self._clock() + self.settings.shutdown_flush_s
            while (self._ready or self.sink.inflight) and self.sink.connected and self._clock() < deadline:
                self._publish()
                self.sink.wait(0.05)
                self._handle(self.sink.poll())
            self._handle(self.sink.poll())
            self.outbox.commit()
        finally:
            log.info("stopping: %s", self.status_line())
            self.sink.stop()
            self.outbox.close()
            self._waker.close()
