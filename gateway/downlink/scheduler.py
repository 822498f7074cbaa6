"""Class A receive windows: when a downlink goes on air, and the hand-over to the radio thread.

The core thread decides (after the outbox commit, within the duty-cycle budget) and puts a ``TxRequest``
in the ``TxQueue``; only the radio thread touches the radio. Its loop (``TxRunner.receive``) keeps
receiving until just before the earliest window, then transmits at ``due_s`` = the uplink's RxDone
(monotonic, the driver's clock) + ``rx_delay_s`` and goes straight back to receive. A request the radio
thread cannot start within ``max_late_s`` of its window is counted (``missed``) and skipped, never sent
late: the node's receiver is already closed.

On a scaled ``VirtualClock`` (the demo, where virtual time runs faster than the host can react) the radio
thread arms the chip through the clock's timer instead, the emulator's stand-in for a hardware-timed TX:
it fires at the exact virtual instant.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gateway.errors import HardwareError
from gateway.hw.clock import SystemClock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TxRequest:
    due_s: float  # radio clock (monotonic): uplink RxDone + rx_delay
    payload: bytes
    node_id: int
    kind: str  # "ack" | "command" | "ack+command"
    freq_hz: int | None = None  # None: the radio's channel; else retuned for this frame, then back
    on_result: Callable[[str], None] | None = (
        None  # "sent" | "missed" | "failed" (called in the radio thread)
    )


@dataclass
class TxStats:
    sent: int = 0
    missed: int = 0
    failed: int = 0
    late_s: list[float] = field(default_factory=list)  # TX mode write time − due, per sent frame (last 1000)

    def as_dict(self) -> dict:
        errs = sorted(abs(x) for x in self.late_s)
        return {
            "sent": self.sent,
            "missed_windows": self.missed,
            "failed": self.failed,
            "max_start_error_ms": round(errs[-1] * 1e3, 3) if errs else None,
        }


class TxQueue:
    """Requests ordered by window; put by the core thread, taken by the radio thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, TxRequest]] = []
        self._seq = itertools.count()

    def put(self, req: TxRequest) -> None:
        with self._lock:
            heapq.heappush(self._heap, (req.due_s, next(self._seq), req))

    def peek(self) -> TxRequest | None:
        with self._lock:
            return self._heap[0][2] if self._heap else None

    def pop(self) -> TxRequest | None:
        with self._lock:
            return heapq.heappop(self._heap)[2] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


class TxRunner:
    """The radio thread's side: ``receive(timeout)`` in place of ``driver.receive`` serves the windows."""

    def __init__(
        self, driver, clock, queue: TxQueue, max_late_s: float = 0.002, lead_s: float = 0.02
    ) -> None:
        self.driver = driver
        self.clock = clock
        self.queue = queue
        self.max_late_s = max_late_s
        self.lead_s = lead_s  # stop receiving this long before a window (the chip keeps a pending packet)
        self.stats = TxStats()
        self._timer = callable(getattr(clock, "call_at", None)) and getattr(clock, "speed", None) is not None
        self._mode_lead_s = 0.0
        if self._timer:  # arm well ahead: the host may wake this thread late; the chip keeps one packet
            self.lead_s = max(lead_s, 0.1)

    def receive(self, timeout_s: float):
        req = self.queue.peek()
        now = self.clock.monotonic()
        if req is None:
            return self.driver.receive(timeout_s)
        until = req.due_s - self.lead_s - now
        if until > 0:
            return self.driver.receive(min(timeout_s, until))
        self.queue.pop()
        self._fire(req)
        return None

    def _result(self, req: TxRequest, result: str) -> None:
        if req.on_result is not None:
            try:
                req.on_result(result)
            except Exception as exc:  # a callback must never stop the radio thread
                log.error("downlink: result callback failed: %s", exc)

    def _miss(self, req: TxRequest, late_s: float) -> None:
        self.stats.missed += 1
        log.warning(
            "downlink: node %08x %s window missed by %.1f ms; skipped, not sent late",
            req.node_id,
            req.kind,
            late_s * 1e3,
        )
        self._result(req, "missed")

    def _fire(self, req: TxRequest) -> None:
        drv = self.driver
        home = drv.config
        retune = req.freq_hz is not None and req.freq_hz != home.frequency_hz
        try:
            if retune:
                try:
                    drv.configure(replace(home, frequency_hz=req.freq_hz))
                except HardwareError as exc:
                    self.stats.failed += 1
                    log.error("downlink: node %08x %s not sent: %s", req.node_id, req.kind, exc.message)
                    self._result(req, "failed")
                    return
            self._send(req)
        finally:
            if retune:
                try:
                    drv.configure(home)
                except HardwareError as exc:
                    log.error("downlink: cannot retune to the receive channel: %s", exc.message)

    def _send(self, req: TxRequest) -> None:
        clock, drv = self.clock, self.driver
        toa = drv.config.time_on_air_s(len(req.payload))
        try:
            if self._timer:
                if clock.monotonic() >= req.due_s:
                    self._miss(req, clock.monotonic() - req.due_s)
                    return
                started: list[float] = []

                def at_window() -> None:
                    started.append(clock.monotonic())
                    drv.transmit(req.payload, wait=False)

                clock.call_at(req.due_s, at_window)
                clock.sleep(max(0.0, req.due_s - clock.monotonic()) + toa)
                drv.wait_tx_done(toa * 0.5 + 0.1)
                t_start = started[0] if started else req.due_s
            else:
                # on the real clock, start the transmit() call early by what it takes to reach the TX
                # mode write (measured at the last transmission), so the frame leaves on time
                ahead = self._mode_lead_s if isinstance(clock, SystemClock) else 0.0
                wait = req.due_s - ahead - clock.monotonic()
                if wait > 0:
                    clock.sleep(wait)
                late = clock.monotonic() + ahead - req.due_s
                if late > self.max_late_s:
                    self._miss(req, late)
                    return
                t_start = clock.monotonic() + ahead
                drv.transmit(req.payload, wait=True)
                measured = getattr(drv, "last_tx_decision_to_mode_s", None)
                if measured is not None:
                    self._mode_lead_s = min(0.01, 0.8 * self._mode_lead_s + 0.2 * measured)
        except HardwareError as exc:
            self.stats.failed += 1
            log.error("downlink: node %08x %s not sent: %s", req.node_id, req.kind, exc.message)
            self._result(req, "failed")
            return
        self.stats.sent += 1
        if len(self.stats.late_s) >= 1000:
            del self.stats.late_s[:500]
        self.stats.late_s.append(t_start - req.due_s)
        self._result(req, "sent")
