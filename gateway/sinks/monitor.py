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

from gateway.pipeline.render import utc_iso

HISTORY_POINTS = 240  # RSSI/SNR points kept per node for the chart
PACKETS_KEPT = 100
RATE_WINDOW_S = 60.0


def expire_after_s(interval_s: float) -> int:
    """Seconds without a report before a node is unavailable: three reporting intervals (a lost frame
    or two is normal), at least one interval plus a minute."""
    return int(max(3 * interval_s, interval_s + 60))


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
        self._packets: deque[tuple] = deque(maxlen=PACKETS_KEPT)
        self._rx: deque[list[int]] = deque()  # [second, packets received in it], the last minute

    # -- the core thread --------------------------------------------------------------------------------

    def packet(
        self, utc_ms: int, node_id: int | None, rssi: float, snr: float, size: int, result: str
    ) -> None:
        """One packet's fate (``result``: "accepted" or the drop reason); kept as a tuple, formatted only
        when read, so that a burst costs an append per packet."""
        sec = int(self._clock())
        with self._lock:
            self._packets.append((utc_ms, node_id, rssi, snr, size, result))
            rx = self._rx
            if rx and rx[-1][0] == sec:
                rx[-1][1] += 1
            else:
                rx.append([sec, 1])
                while rx and sec - rx[0][0] >= RATE_WINDOW_S:
                    rx.popleft()

    def telemetry(
        self,
        node_id: int,
        name: str,
        fcnt: int,
        received: str,
        rssi: float | None,
        snr: float | None,
        values: list[dict[str, Any]] | None,
        interval_s: float,
    ) -> NodeState:
        """A telemetry frame the gateway published (estimates are not observations: never pass them);
        ``values`` None keeps the last ones."""
        now = self._clock()
        nid = node_id
        with self._lock:
            st = self._nodes.get(nid)
            if st is None:
                st = self._nodes[nid] = NodeState(nid, name, interval_s)
            st.name = name
            st.interval_s = interval_s
            if values is not None:
                st.values = values
            st.last_seen = received
            st.last_seen_s = now
            st.rssi, st.snr = rssi, snr
            st.frames += 1
            if st.last_fcnt is not None and fcnt > st.last_fcnt + 1:
                st.lost += fcnt - st.last_fcnt - 1
            if st.last_fcnt is None or fcnt > st.last_fcnt:
                st.last_fcnt = fcnt
            if st.rssi is not None and st.snr is not None:
                st.history.append((st.last_seen, float(st.rssi), float(st.snr)))
            return st

    def get(self, node_id: int) -> NodeState | None:
        with self._lock:
            return self._nodes.get(node_id)

    def rename(self, node_id: int, name: str) -> str | None:
        """Give a known node its new topic name; returns the old one if it changed (else None)."""
        with self._lock:
            st = self._nodes.get(node_id)
            if st is None or st.name == name:
                return None
            old, st.name = st.name, name
            return old

    def forget(self, node_id: int) -> NodeState | None:
        with self._lock:
            return self._nodes.pop(node_id, None)

    def states(self) -> list[NodeState]:
        """The live node states (the core thread's own use: it is their only writer)."""
        with self._lock:
            return list(self._nodes.values())

    # -- readers (any thread) -----------------------------------------------------------------------------

    def rx_per_min(self) -> float:
        sec = int(self._clock())
        with self._lock:
            n = sum(c for t, c in self._rx if sec - t < RATE_WINDOW_S)
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
            rows = list(reversed(self._packets))
        return [
            {
                "time": utc_iso(t),
                "node": None if n is None else f"{n:08x}",
                "rssi": r,
                "snr": q,
                "size": z,
                "result": res,
            }
            for t, n, r, q, z, res in rows
        ]
