"""What the core does besides frames: per-node availability and link figures, Home Assistant discovery, and
the figures the status page and ``/metrics`` read.

Runs in the core thread (``packet``/``published`` from the pipeline, ``tick`` once per core step), so it
may use the registry and the outbox; the HTTP thread reads only ``monitor`` and ``snapshot``.

Topics (``<p>`` = prefix/gateway id): ``<p>/nodes/<node>/status`` retained ``online``/``offline`` (offline
once the node has been silent for :func:`expire_after_s` of its reporting interval), ``<p>/nodes/<node>/link``
retained ``{"last_seen", "rssi", "snr", "frames", "lost", "loss_pct"}`` (at most every ``link_interval_s``).

Retained messages never outlive what they describe: a renamed node's old topics are emptied (and its Home
Assistant entities re-announced with the new name and state topics, under the same config topics, which
are keyed by node id); a removed node's are emptied and its entities withdrawn. Whatever an earlier run
left on the broker is reconciled at every connection: the retained messages under ``<p>/nodes/`` and the
discovery configs of this gateway's nodes that the broker sends on subscribing are withdrawn when no
registered node has that name or id any more.
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
    retain_telemetry: bool = False  # [mqtt] retain_telemetry: a node's telemetry topic is retained too


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
        self._silent: dict[int, str] = {}  # registered, never heard this run, announced offline: topic name
        self._retained: list[tuple[str, bytes]] = []  # retained messages from the broker, for ``tick``
        self._retained_configs: dict[int, set[str]] = {}  # discovery configs kept for registered nodes
        self._known: tuple[float, dict[int, str]] | None = None  # registry: node id → topic name (cached)
        self._oldest_age_s: float | None = None
        self._parse_due: dict[int, float] = {}

    def attach(self, core: Any) -> None:
        self.core = core
        if self.discovery is not None:
            core.sink.subscribe(self.discovery.birth_topic)
        if self._registry_nodes is None:
            return  # nothing to reconcile against

        def keep(topic: str, payload: bytes) -> None:  # inside the sink's wait; ``tick`` acts on them
            self._retained.append((topic, payload))

        filters = [f"{self.base}/nodes/+/{suffix}" for suffix in self._node_suffixes()]
        if self.discovery is not None:
            filters.append(f"{self.discovery.prefix}/sensor/+/+/config")
        for topic_filter in filters:
            core.sink.subscribe(topic_filter, keep, retained_only=True)

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
        old_name = self.monitor.rename(nid, name)
        if old_name is not None:
            self._renamed(nid, old_name, name)
        st = self.monitor.telemetry(nid, name, fcnt, received, rssi, snr, values, interval)
        silent_as = self._silent.pop(nid, None)
        if silent_as is not None and silent_as != name:  # renamed before it was ever heard
            self._send(f"{self.base}/nodes/{silent_as}/status", b"")
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
        if self._retained:
            self._reconcile()
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
        reports = self._reports()
        out: dict[str, Any] = {
            "rx_per_min": self.monitor.rx_per_min(),
            "outbox_oldest_age_s": self._oldest_age_s if self._oldest_age_s is not None else 0.0,
            "outbox_bytes": self._db_bytes(),
            "radio": self._safe_radio_stats(),
            "nodes": {
                st.name: {
                    "node_id": f"{st.node_id:08x}",
                    "online": bool(st.online),
                    **st.link(),
                    **({"node_info": reports[st.node_id]} if st.node_id in reports else {}),
                }
                for st in self.monitor.states()
            },
        }
        return out

    def _reports(self) -> dict[int, dict]:
        """The firmware and models each node last reported (node info), kept by the downlink."""
        downlink = getattr(self.core, "downlink", None)
        reported = getattr(downlink, "reported", None) or {}
        return {nid: r.to_dict() for nid, r in reported.items()}

    # -- internals -------------------------------------------------------------------------------------------

    def _interval(self, node: Any) -> float:
        iv = getattr(node, "interval_s", None)
        return float(iv) if iv else self.settings.default_interval_s

    def _node_topic(self, st: NodeState) -> str:
        return f"{self.base}/nodes/{st.name}"

    def _node_suffixes(self) -> tuple[str, ...]:
        """The retained topics of a node (telemetry only when ``retain_telemetry``)."""
        return ("status", "link", "telemetry") if self.settings.retain_telemetry else ("status", "link")

    def _renamed(self, node_id: int, old: str, new: str) -> None:
        """Empty the old name's retained topics, state the node's status under the new one and re-announce
        its entities (same config topics: HA keeps the entity and its history, with the new name)."""
        log.info(
            "node %08x: renamed %s -> %s, clearing the retained topics of the old name", node_id, old, new
        )
        for suffix in self._node_suffixes():
            self._send(f"{self.base}/nodes/{old}/{suffix}", b"")
        st = self.monitor.get(node_id)
        if st is not None and st.online is not None:
            self._send(f"{self._node_topic(st)}/status", b"online" if st.online else b"offline")
        if st is not None and node_id in self._link_due:  # the link figures move at once too
            self._link_due[node_id] = self._clock() + self.settings.link_interval_s
            self._send(f"{self._node_topic(st)}/link", json.dumps(st.link()).encode())
        if node_id in self._sensors:
            _name, sensors, interval, kind = self._sensors[node_id]
            self._sensors[node_id] = (new, sensors, interval, kind)
            self._announce(node_id)

    def _known_nodes(self) -> dict[int, str] | None:
        """Registered node id → topic name, read at most once a second (None: the registry failed)."""
        now = self._clock()
        if self._known is None or now - self._known[0] >= 1.0:
            assert self._registry_nodes is not None
            try:
                nodes = self._registry_nodes()
            except Exception as exc:  # a locked database must not stop the core
                log.warning("registry read failed, retained topics not reconciled now: %s", exc)
                return None
            self._known = (now, {n.node_id: topic_name(n.node_id, n.name) for n in nodes})
        return self._known[1]

    def _reconcile(self) -> None:
        """Retained messages the broker holds from earlier runs: withdraw those of names and node ids no
        longer registered; note the discovery configs of registered nodes (see ``_announce``)."""
        known = self._known_nodes()
        if known is None:
            return  # kept for the next tick
        batch, self._retained = self._retained, []
        names = set(known.values()) | {st.name for st in self.monitor.states()}
        node_topics = f"{self.base}/nodes/"
        for topic, payload in batch:
            if not payload:
                continue
            if topic.startswith(node_topics):
                name = topic[len(node_topics) :].split("/", 1)[0]
                if name not in names:
                    log.info("retained %s: no registered node is named %s any more, clearing it", topic, name)
                    self._send(topic, b"")
                continue
            node_id = self._config_node(topic, payload)
            if node_id is None:
                continue
            if node_id in known:
                if node_id not in self._announced:
                    self._retained_configs.setdefault(node_id, set()).add(topic)
                continue
            log.info("homeassistant: node %08x is no longer registered, withdrawing %s", node_id, topic)
            self._send(topic, b"")

    def _config_node(self, topic: str, payload: bytes) -> int | None:
        """The node id of a discovery config this gateway announced (its object and its via_device say so),
        else None (the gateway's own configs, other gateways', other integrations')."""
        if self.discovery is None:
            return None
        ident = self.discovery.gateway_ident
        obj = topic.split("/")[-3]
        suffix = obj[len(ident) + 1 :]
        if not obj.startswith(f"{ident}_") or len(suffix) != 8:
            return None
        try:
            node_id = int(suffix, 16)
            via = json.loads(payload).get("device", {}).get("via_device")
        except (ValueError, AttributeError):
            return None
        return node_id if via == ident else None

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
        before = set(old[1]) if old is not None else self._retained_configs.pop(node_id, set())
        for gone in before - set(topics):  # a channel the node no longer sends (this run or an earlier one)
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
        """Removed nodes lose their entities (empty retained configs) and their retained topics; renamed nodes
        move theirs to the new name (``_renamed``). Registered nodes never heard are announced offline once
        their silence is longer than their expiry."""
        if self._registry_nodes is None:
            return
        try:
            nodes = {n.node_id: n for n in self._registry_nodes()}
        except Exception as exc:  # a locked database must not stop the core
            log.warning("registry check failed: %s", exc)
            return
        self._known = (now, {nid: topic_name(nid, n.name) for nid, n in nodes.items()})
        for st in self.monitor.states():
            node = nodes.get(st.node_id)
            if node is not None:
                name = topic_name(st.node_id, node.name)
                old_name = self.monitor.rename(st.node_id, name)
                if old_name is not None:
                    self._renamed(st.node_id, old_name, name)
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
            for suffix in self._node_suffixes():
                self._send(f"{self._node_topic(st)}/{suffix}", b"")
        for nid in [n for n in self._silent if n not in nodes]:  # removed before it was ever heard
            self._send(f"{self.base}/nodes/{self._silent.pop(nid)}/status", b"")
        heard = {st.node_id for st in self.monitor.states()}
        for nid, node in nodes.items():
            name = topic_name(nid, node.name)
            if nid in heard:
                continue
            if nid in self._silent:
                if self._silent[nid] != name:  # renamed while silent
                    self._send(f"{self.base}/nodes/{self._silent[nid]}/status", b"")
                    self._silent[nid] = name
                    self._send(f"{self.base}/nodes/{name}/status", b"offline")
                continue
            if now - self._started > expire_after_s(self._interval(node)):
                self._silent[nid] = name
                self._send(f"{self.base}/nodes/{name}/status", b"offline")

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

    def nodes() -> list[dict[str, Any]]:
        """The monitor's view of each node, with the node info of the last stats snapshot."""
        known = ops.snapshot.get("nodes") or {}
        out = ops.monitor.nodes()
        for view in out:
            info = (known.get(view.get("name")) or {}).get("node_info")
            if info is not None:
                view["node_info"] = info
        return out

    return WebSources(
        status=status,
        nodes=lambda: {"nodes": nodes(), "history": ops.monitor.history()},
        packets=lambda: {"packets": ops.monitor.packets()},
        stats=lambda: ops.snapshot,
    )


def start_web(ops: Operations, listen: tuple[str, int], token: str | None) -> Any:
    """Start the HTTP listener (status page, ``/api/*``, ``/metrics``); returns the WebServer."""
    from gateway.web.server import WebServer

    server = WebServer(listen, web_sources(ops), token)
    server.start()
    return server
