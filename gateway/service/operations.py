"""What the core does besides frames: per-node availability and link figures, Home Assistant discovery, and
the figures the status page and ``/metrics`` read.

Runs in the core thread (``packet``/``published`` from the pipeline, ``tick`` once per core step), so it
may use the registry and the outbox; the HTTP thread reads only ``monitor`` and ``snapshot``.

Topics (``<p>`` = prefix/gateway id): ``<p>/nodes/<node>/status`` retained ``online``/``offline`` (offline
once the node has been silent for :func:`expire_after_s` of its reporting interval), ``<p>/nodes/<node>/link``
retained ``{"last_seen", "rssi", "snr", "frames", "lost", "loss_pct"}`` (at most every ``link_interval_s``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.frames.registry import topic_name
from gateway.pipeline.render import utc_iso
from gateway.radio.packet import RxPacket
from gateway.sinks.monitor import Monitor, NodeState, expire_after_s

if TYPE_CHECKING:  # Home Assistant's code is imported only when [homeassistant] is on
    from gateway.sinks.homeassistant import Discovery, Sensor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OperationsSettings:
    default_interval_s: float = 300.0  # [nodes] report_interval_s: for nodes registered without one
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"
    stats_interval_s: float = 60.0
    link_interval_s: float = 30.0
    registry_check_s: float = 30.0
    values_interval_s: float = 1.0  # a node's values are parsed at most this often (see ``published``)
    snapshot_interval_s: float = 2.0  # how fresh /api/status and /metrics are


class Operations:
    """The core's observer (see gateway.service.core.Core ``observer``)."""

    def __init__(
        self,
        gateway_id: str,
        base_topic: str,
        settings: OperationsSettings,
        node_lookup: Callable[[int], Any],
        registry_nodes: Callable[[], list[Any]] | None = None,
        radio_stats: Callable[[], dict] | None = None,
        db_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.base = base_topic
        self.monitor = Monitor(clock)
        self.discovery: Discovery | None = None
        if settings.homeassistant:
            from gateway.sinks.homeassistant import Discovery, sensors_of

            self.discovery = Discovery(gateway_id, base_topic, settings.discovery_prefix)
            self._sensors_of = sensors_of
        self._lookup = node_lookup
        self._registry_nodes = registry_nodes
        self._radio_stats = radio_stats
        self._db_file = db_file
        self._clock = clock
        self.core: Any = None
        self.snapshot: dict[str, Any] = {}
        self._pending: deque[tuple[str, bytes]] = deque()  # retained messages not yet accepted by the sink
        self._announced: dict[int, tuple[tuple, list[str]]] = {}  # node → (signature, config topics)
        self._sensors: dict[int, tuple[str, tuple[Sensor, ...], float, str]] = {}
        self._link_due: dict[int, float] = {}
        self._connects = -1
        self._started = clock()
        self._next_registry = self._started + settings.registry_check_s
        self._next_snapshot = self._started
        self._next_check = self._started
        self._silent: set[int] = set()  # registered, never heard this run, announced offline
        self._oldest_age_s: float | None = None
        self._parse_due: dict[int, float] = {}

    def attach(self, core: Any) -> None:
        self.core = core
        if self.discovery is not None:
            core.sink.subscribe(self.discovery.birth_topic)

    # -- from the core --------------------------------------------------------------------------------------

    def packet(self, packet: RxPacket, accepted: Any) -> None:
        if accepted is not None:
            node, result = accepted.node_id, "accepted"
        else:
            reason, node, _message = self.core.pipeline.last_drop
            result = reason or "dropped"
        utc_ms = accepted.radio.utc_ms if accepted is not None else int(packet.utc.timestamp() * 1000)
        self.monitor.packet(utc_ms, node, packet.rssi_dbm, packet.snr_db, len(packet.payload), result)

    def published(self, topic: str, payload: bytes, stored: Any = None) -> None:
        """A stored frame's message was published. Its JSON is parsed (for the values, the page and
        discovery) at most every ``values_interval_s`` per node: a node reports every few seconds at most,
        so in the field that is every message, while a burst costs no parsing."""
        if not topic.endswith("/telemetry"):
            return
        now = self._clock()
        if stored is not None:
            f = stored.frame
            nid = f.node_id
            due = now >= self._parse_due.get(nid, 0.0)
            msg = json.loads(payload) if due else None
            name = topic[len(self.base) + 7 : -10]  # <base>/nodes/<name>/telemetry
            fcnt, received, rssi, snr = f.fcnt, utc_iso(f.radio.utc_ms), f.radio.rssi_dbm, f.radio.snr_db
        else:
            msg = json.loads(payload)
            if msg.get("estimated"):
                return
            nid, name, fcnt, received = (
                int(msg["node_id"]),
                str(msg["node_name"]),
                msg["fcnt"],
                msg["received"],
            )
            radio = msg.get("radio") or {}
            rssi, snr, due = radio.get("rssi"), radio.get("snr"), True
        if due:
            self._parse_due[nid] = now + self.settings.values_interval_s
        node = self._lookup(nid)
        interval = self._interval(node)
        values = list(msg.get("values") or []) if msg is not None else None
        st = self.monitor.telemetry(nid, name, fcnt, received, rssi, snr, values, interval)
        self._silent.discard(nid)
        if st.online is not True:
            st.online = True
            self._send(f"{self._node_topic(st)}/status", b"online")
        if nid not in self._link_due:
            self._link_due[nid] = now  # the first link figures at the next tick
        if self.settings.homeassistant and msg is not None:
            kind = getattr(getattr(node, "format", None), "value", None) or str(msg.get("format", "frame"))
            if "model_id" in msg:
                kind = f"{kind}+model {msg['model_id']}"
            self._sensors[nid] = (st.name, self._sensors_of(st.values), interval, kind)
            self._announce(nid)

    def tick(self, now: float) -> None:
        core = self.core
        if core is None:
            return
        if core.sink.connected and core.sink.stats.connects != self._connects:
            self._connects = core.sink.stats.connects
            self._announce_all()  # a new connection: the broker may have lost what was retained
        birth = self.discovery.birth_topic if self.discovery is not None else None
        for topic, payload in core.sink.take_messages():
            if topic == birth and payload.strip() == b"online":
                log.info("homeassistant: %s is online, announcing every entity again", topic)
                self._announce_all()
        if now < self._next_check:
            self._flush()
            return
        self._next_check = now + 1.0
        for st in self.monitor.states():
            if st.online and now - st.last_seen_s > expire_after_s(st.interval_s):
                st.online = False
                log.warning(
                    "node %08x (%s): silent for %.0f s, now offline",
                    st.node_id,
                    st.name,
                    now - st.last_seen_s,
                )
                self._send(f"{self._node_topic(st)}/status", b"offline")
            due = self._link_due.get(st.node_id)
            if due is not None and now >= due:
                self._link_due[st.node_id] = now + self.settings.link_interval_s
                self._send(f"{self._node_topic(st)}/link", json.dumps(st.link()).encode())
        if now >= self._next_registry:
            self._next_registry = now + self.settings.registry_check_s
            self._check_registry(now)
        if now >= self._next_snapshot:
            self._next_snapshot = now + self.settings.snapshot_interval_s
            self._oldest_age_s = self._outbox_oldest_age()
            self.snapshot = core.stats()
        self._flush()

    def stats(self) -> dict[str, Any]:
        """Added to the stats topic: what HA's gateway diagnostics and ``/metrics`` read."""
        out: dict[str, Any] = {
            "rx_per_min": self.monitor.rx_per_min(),
            "outbox_oldest_age_s": self._oldest_age_s if self._oldest_age_s is not None else 0.0,
            "outbox_bytes": self._db_bytes(),
            "radio": self._safe_radio_stats(),
            "nodes": {
                st.name: {"node_id": f"{st.node_id:08x}", "online": bool(st.online), **st.link()}
                for st in self.monitor.states()
            },
        }
        return out

    # -- internals -------------------------------------------------------------------------------------------

    def _interval(self, node: Any) -> float:
        iv = getattr(node, "interval_s", None)
        return float(iv) if iv else self.settings.default_interval_s

    def _node_topic(self, st: NodeState) -> str:
        return f"{self.base}/nodes/{st.name}"

    def _send(self, topic: str, payload: bytes) -> None:
        """Retained, in order; kept until the sink takes it (a full window or a broker outage)."""
        if len(self._pending) >= 10_000:
            self._pending.popleft()
        self._pending.append((topic, payload))
        self._flush()

    def _flush(self) -> None:
        core = self.core
        while self._pending and core is not None and core.sink.connected:
            topic, payload = self._pending[0]
            if not core.publish_extra(topic, payload, retain=True):
                return
            self._pending.popleft()

    def _announce(self, node_id: int, force: bool = False) -> None:
        if self.discovery is None:
            return
        name, sensors, interval, kind = self._sensors[node_id]
        signature = (name, sensors, expire_after_s(interval), kind)
        old = self._announced.get(node_id)
        if old is not None and old[0] == signature and not force:
            return
        configs = self.discovery.node_configs(node_id, name, sensors, interval, kind)
        topics = [t for t, _ in configs]
        if old is not None:
            for gone in set(old[1]) - set(topics):  # a channel the node no longer sends
                self._send(gone, b"")
        if old is None or old[0] != signature:
            log.info("homeassistant: node %08x (%s): announcing %d entities", node_id, name, len(configs))
        for topic, payload in configs:
            self._send(topic, payload)
        self._announced[node_id] = (signature, topics)

    def _announce_all(self) -> None:
        for st in self.monitor.states():
            if st.online is not None:
                self._send(f"{self._node_topic(st)}/status", b"online" if st.online else b"offline")
        if self.discovery is None:
            return
        for topic, payload in self.discovery.gateway_configs(self.settings.stats_interval_s):
            self._send(topic, payload)
        for node_id in list(self._sensors):
            self._announce(node_id, force=True)

    def _check_registry(self, now: float) -> None:
        """Removed nodes lose their entities (empty retained configs) and their status; renamed nodes are
        announced under their new name by their next telemetry. Registered nodes never heard are announced
        offline once their silence is longer than their expiry."""
        if self._registry_nodes is None:
            return
        try:
            nodes = {n.node_id: n for n in self._registry_nodes()}
        except Exception as exc:  # a locked database must not stop the core
            log.warning("registry check failed: %s", exc)
            return
        for st in self.monitor.states():
            if st.node_id in nodes:
                continue
            self.monitor.forget(st.node_id)
            self._link_due.pop(st.node_id, None)
            self._sensors.pop(st.node_id, None)
            old = self._announced.pop(st.node_id, None)
            log.info(
                "node %08x (%s): removed from the registry, withdrawing its entities", st.node_id, st.name
            )
            for topic in old[1] if old else []:
                self._send(topic, b"")
            self._send(f"{self._node_topic(st)}/status", b"")
            self._send(f"{self._node_topic(st)}/link", b"")
        heard = {st.node_id for st in self.monitor.states()}
        for nid, node in nodes.items():
            if nid in heard or nid in self._silent:
                continue
            if now - self._started > expire_after_s(self._interval(node)):
                self._silent.add(nid)
                self._send(f"{self.base}/nodes/{topic_name(nid, node.name)}/status", b"offline")

    def _outbox_oldest_age(self) -> float | None:
        try:
            rows = self.core.outbox.load(0, 1)
        except Exception as exc:  # the figure is optional; the outbox's own errors surface elsewhere
            log.debug("outbox oldest age: %s", exc)
            return None
        if not rows:
            return 0.0
        return round(max(0.0, time.time() - rows[0].frame.radio.utc_ms / 1000.0), 1)

    def _db_bytes(self) -> int:
        if self._db_file is None:
            return 0
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self._db_file}{suffix}").st_size
        return total

    def _safe_radio_stats(self) -> dict:
        if self._radio_stats is None:
            return {}
        try:
            return dict(self._radio_stats())
        except Exception as exc:  # a radio that failed still lets the stats go out
            log.debug("radio stats: %s", exc)
            return {}


def web_sources(ops: Operations) -> Any:
    """The status page's endpoints over an Operations' monitor and stats snapshot."""
    from gateway.web.server import WebSources

    def status() -> dict[str, Any]:
        snap = dict(ops.snapshot)
        snap["rx_per_min"] = ops.monitor.rx_per_min()
        snap.pop("nodes", None)  # /api/nodes has them
        return snap

    return WebSources(
        status=status,
        nodes=lambda: {"nodes": ops.monitor.nodes(), "history": ops.monitor.history()},
        packets=lambda: {"packets": ops.monitor.packets()},
        stats=lambda: ops.snapshot,
    )


def start_web(ops: Operations, listen: tuple[str, int], token: str | None) -> Any:
    """Start the HTTP listener (status page, ``/api/*``, ``/metrics``); returns the WebServer."""
    from gateway.web.server import WebServer

    server = WebServer(listen, web_sources(ops), token)
    server.start()
    return server
