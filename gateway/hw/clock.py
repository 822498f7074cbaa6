"""Clocks: the wall-independent time every layer below the service reads, injected so tests can
run faster than real time.

``SystemClock`` is the real one. ``VirtualClock`` is a discrete-event clock: callers schedule
callbacks with ``call_at`` and time moves only through ``sleep``/``advance`` (manual mode), or
follows the real clock scaled by ``speed`` (for threaded simulations). Callbacks run in time order
with ``monotonic()`` reporting their scheduled time, so a timestamp taken inside one is exact.

In scaled mode a loaded host may run the timer thread late; virtual time then never passes an event
that has not fired (``monotonic()`` stops at it, and any thread that sleeps or waits fires what is
due), so a chip event is never late relative to virtual time, only virtual time relative to real.
In manual mode, work handed to another thread at a virtual instant (a GPIO callback thread, as
RPi.GPIO's) is announced with ``hold``/``release``: time does not move on until it has finished.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

QUIESCE_TIMEOUT_S = 0.5


@runtime_checkable
class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The process's monotonic clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait_event(self, event: threading.Event, timeout_s: float | None) -> bool:
        return event.wait(timeout_s)


SYSTEM_CLOCK = SystemClock()


def wait_event(clock: Clock, event: threading.Event, timeout_s: float | None, poll_s: float = 0.001) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passes on ``clock``; True if it was set.

    Uses the clock's own ``wait_event`` when it has one (blocking, no polling); otherwise polls.
    """
    waiter = getattr(clock, "wait_event", None)
    if waiter is not None:
        return bool(waiter(event, timeout_s))
    deadline = None if timeout_s is None else clock.monotonic() + timeout_s
    while not event.is_set():
        now = clock.monotonic()
        if deadline is not None and now >= deadline:
            return False
        clock.sleep(poll_s if deadline is None else min(poll_s, deadline - now))
    return True


class VirtualClock:
    """A clock whose time advances only when asked (``speed=None``) or at ``speed`` × real time.

    ``call_at(when, fn)`` schedules ``fn()``; it runs when time reaches ``when``. Thread-safe; a
    callback must not sleep or advance the clock itself.
    """

    def __init__(self, start_s: float = 1000.0, speed: float | None = None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        # One lock for the clock and everything simulated on it (chips, air): a single lock order.
        self.lock = threading.RLock()
        self._lock = self.lock
        self._now = float(start_s)
        self._speed = speed
        self._offset = float(start_s)
        self._real0 = time.perf_counter()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._firing = False
        self._ticker: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._seen = float(start_s)  # the latest time monotonic() reported (scaled mode)
        self._held = 0  # work running on other threads at the current instant (manual mode)
        self._idle = threading.Condition(threading.Lock())

    @property
    def speed(self) -> float | None:
        return self._speed

    def monotonic(self) -> float:
        """Current virtual time; inside a callback, that callback's scheduled time.

        Reading the clock never runs callbacks (so a chip's register write is never interrupted);
        ``sleep``, ``advance`` and ``wait_event`` do.
        """
        with self._lock:
            if self._speed is None or self._firing:
                return self._now
            now = self._scaled_now()
            self._drop_cancelled()
            if self._queue and self._queue[0][0] < now:
                now = self._queue[0][0]  # not past an event the (late) timer thread has not fired yet
            if now > self._seen:
                self._seen = now
            return self._seen

    def hold(self) -> None:
        """Another thread took on work at this instant; manual time waits for ``release``."""
        with self._idle:
            self._held += 1

    def release(self) -> None:
        with self._idle:
            self._held -= 1
            if self._held <= 0:
                self._held = 0
                self._idle.notify_all()

    def _quiesce(self) -> None:
        """Manual mode: let held work on other threads finish before time moves on.

        The simulation lock is released meanwhile (however deeply this thread holds it), since that
        work usually needs it (a driver's SPI from its GPIO callback). Bounded, so a callback stuck on
        a lock of the waiting thread cannot hang the simulation.
        """
        if self._speed is not None or not self._held:
            return
        lock: Any = self._lock
        saved = lock._release_save() if lock._is_owned() else None
        try:
            with self._idle:
                if not self._idle.wait_for(lambda: self._held == 0, QUIESCE_TIMEOUT_S):
                    log.warning("virtual clock: a GPIO callback did not finish in %.1f s", QUIESCE_TIMEOUT_S)
        finally:
            if saved is not None:
                lock._acquire_restore(saved)

    def call_at(self, when_s: float, fn: Callable[[], None]) -> int:
        with self._lock:
            seq = next(self._seq)
            heapq.heappush(self._queue, (max(when_s, self._now, self._seen), seq, fn))
            if self._speed is not None:
                if self._ticker is None and not self._closed:
                    self._ticker = threading.Thread(target=self._tick, name="virtual-clock", daemon=True)
                    self._ticker.start()
                self._wake.set()
            return seq

    def close(self) -> None:
        """Stop the timer thread of a scaled clock (a no-op in manual mode)."""
        self._closed = True
        self._wake.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(1.0)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> int:
        with self._lock:
            return self.call_at(self.monotonic() + max(delay_s, 0.0), fn)

    def cancel(self, handle: int) -> None:
        with self._lock:
            self._cancelled.add(handle)

    def next_event_s(self) -> float | None:
        with self._lock:
            self._drop_cancelled()
            return self._queue[0][0] if self._queue else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due, in order."""
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._quiesce()
        with self._lock:
            if self._speed is None:
                self._run_until(self._now + seconds)
            else:
                self._offset += seconds
                self._run_until(self._scaled_now())
        self._quiesce()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self._speed is None:
            self.advance(seconds)
        else:
            time.sleep(seconds / self._speed)
            with self._lock:
                self._run_until(self._scaled_now())

    def wait_event(self, event: threading.Event, timeout_s: float | None) -> bool:
        """Wait on ``event`` in virtual time: jumps straight to the next due callback (manual mode).

        A zero timeout is a poll: it never moves time, so a clock callback may use it.
        """
        if timeout_s is not None and timeout_s <= 0:
            if not self._firing:
                self._quiesce()
            return event.is_set()
        with self._lock:
            deadline = None if timeout_s is None else self.monotonic() + timeout_s
        while True:
            self._quiesce()
            if event.is_set():
                return True
            with self._lock:
                if self._speed is not None:
                    self._run_until(self._scaled_now())
                now = self.monotonic()
                if deadline is not None and now >= deadline:
                    return event.is_set()
                nxt = self.next_event_s()
                if self._speed is None:
                    if nxt is None and deadline is None:
                        raise RuntimeError("waiting forever on a virtual clock with nothing scheduled")
                    target = nxt if deadline is None or (nxt is not None and nxt <= deadline) else deadline
                    self._run_until(target)
                    continue
                horizon = [t - now for t in (nxt, deadline) if t is not None]
            wait_real = min([*horizon, 0.05]) / self._speed
            event.wait(max(wait_real, 0.0))

    # -- internals -----------------------------------------------------------------------------
    def _tick(self) -> None:
        """Scaled mode: run callbacks when they fall due, like hardware timers would."""
        assert self._speed is not None
        while not self._closed:
            with self._lock:
                self._wake.clear()
                try:
                    self._run_until(self._scaled_now())
                except Exception:  # a faulty callback must not stop time for everyone else
                    log.exception("virtual clock callback failed")
                nxt = self.next_event_s()
                now = self._scaled_now()
            delay = 0.05 if nxt is None else min(max(nxt - now, 0.0) / self._speed, 0.05)
            self._wake.wait(delay)

    def _scaled_now(self) -> float:
        assert self._speed is not None
        return max(self._now, self._offset + (time.perf_counter() - self._real0) * self._speed)

    def _drop_cancelled(self) -> None:
        while self._queue and self._queue[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._queue)[1])

    def _run_until(self, target: float) -> None:
        if self._firing:
            raise RuntimeError("a clock callback tried to advance the clock")
        self._firing = True
        try:
            while True:
                self._drop_cancelled()
                if not self._queue or self._queue[0][0] > target:
                    break
                when, _, fn = heapq.heappop(self._queue)
                self._now = max(self._now, when)
                fn()
                if self._held and self._speed is None:
                    self._quiesce()  # callbacks it started on other threads run at this instant
            self._now = max(self._now, target)
        finally:
            self._firing = False
