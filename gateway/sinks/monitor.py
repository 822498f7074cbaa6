"""What the gateway has seen lately, per node and per packet: for availability, discovery, metrics and the
status page.

Fed by the core thread (every packet's fate, every telemetry message published); read by the HTTP thread
through ``nodes``/``packets``/``history`` snapshots taken under one lock, so a reader never sees a node half
updated and never slows the core for more than a copy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HISTORY_POINTS = 240  # RSSI/SNR points kept per node for the chart
PACKETS_KEPT = 100
RATE_WINDOW_S = 60.0


@dataclass(slots=True)
class NodeState:
    node_id: int
    name: str
    interval_s: float
    values: list[dict[str, Any]] = field(default_factory=list)
    last_seen: str = ""  # ISO 8601 UTC of the last telemetry
    last_seen_s: float = 0.0  # monotonic
    rssi: float | None = None
    snr: float | None = None
    frames: int = 0
    lost: int = 0  # counter gaps: frames the node sent that never arrived
    last_fcnt: int | None = None
    online: bool | None = None  # None: not announced yet
    history: deque[tuple[str, float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))

    @property
    def loss_pct(self) -> float:
        total = self.frames + self.lost
        return round(100.0 * self.lost / total, 2) if total else 0.0

    def link(self) -> dict[str, Any]:
        return {
            "last_seen": self.last_seen,
            "rssi": self.rssi,
            "snr": self.snr,
            "frames": self.frames,
            "lost": self.lost,
            "loss_pct": self.loss_pct,
        }

    def view(self) -> dict[str, Any]:
        return {
            "node_id": f"{self.node_id:08x}",
            "name": self.name,
            "online": bool(self.online),
            "interval_s": self.interval_s,
            "values": self.values,
            **self.link(),
        }


class Monitor:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[int, NodeState] = {}
        self._packets: deque[dict[str, Any]] = deque(maxlen=PACKETS_KEPT)
        self._rx: deque[float] = deque()

    # -- the core thread --------------------------------------------------------------------------------

    def packet(self, entry: dict[str, Any]) -> None:
        """One packet's fate: ``{"time", "node", "rssi", "snr", "size", "result"}`` (result "accepted" or
        the drop reason)."""
        now = self._clock()
        with self._lock:
            self._packets.append(entry)
            self._rx.append(now)
            while self._rx and now - self._rx[0] > RATE_WINDOW_S:
                self._rx.popleft()

    def telemetry(self, msg: dict[str, Any], interval_s: float) -> NodeState:
        """A telemetry message the gateway published (estimates are not observations: skip them)."""
        now = self._clock()
        nid = int(msg["node_id"])
        radio = msg.get("radio") or {}
        fcnt = int(msg.get("fcnt", 0))
        with self._lock:
            st = self._nodes.get(nid)
            if st is None:
                st = self._nodes[nid] = NodeState(nid, str(msg.get("node_name")), interval_s)
            st.name = str(msg.get("node_name") or st.name)
            st.interval_s = interval_s
            st.values = list(msg.get("values") or [])
            st.last_seen = str(msg.get("received", ""))
            st.last_seen_s = now
            st.rssi, st.snr = radio.get("rssi"), radio.get("snr")
            st.frames += 1
            if st.last_fcnt is not None and fcnt > st.last_fcnt + 1:
                st.lost += fcnt - st.last_fcnt - 1
            if st.last_fcnt is None or fcnt > st.last_fcnt:
                st.last_fcnt = fcnt
            if st.rssi is not None and st.snr is not None:
                st.history.append((st.last_seen, float(st.rssi), float(st.snr)))
            return st

    def forget(self, node_id: int) -> NodeState | None:
        with self._lock:
            return self._nodes.pop(node_id, None)

    def states(self) -> list[NodeState]:
        """The live node states (the core thread's own use: it is their only writer)."""
        with self._lock:
            return list(self._nodes.values())

    # -- readers (any thread) -----------------------------------------------------------------------------

    def rx_per_min(self) -> float:
        now = self._clock()
        with self._lock:
            n = sum(1 for t in self._rx if now - t <= RATE_WINDOW_S)
        return round(n * 60.0 / RATE_WINDOW_S, 1)

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [st.view() for st in sorted(self._nodes.values(), key=lambda s: s.name)]

    def history(self) -> dict[str, list[tuple[str, float, float]]]:
        with self._lock:
            return {st.name: list(st.history) for st in self._nodes.values()}

    def packets(self) -> list[dict[str, Any]]:
        """The last packets, newest first."""
        with self._lock:
            return list(reversed(self._packets))
