"""Clocks: the virtual clock runs callbacks in time order and waits in virtual time."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.hw.clock import SYSTEM_CLOCK, VirtualClock, wait_event


def test_callbacks_run_in_order_at_their_time() -> None:
    clock = VirtualClock(start_s=0.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(0.3, lambda: seen.append(("c", clock.monotonic())))
    clock.call_at(0.1, lambda: seen.append(("a", clock.monotonic())))
    handle = clock.call_at(0.2, lambda: seen.append(("never", clock.monotonic())))
    clock.call_later(0.15, lambda: clock.call_later(0.1, lambda: seen.append(("b", clock.monotonic()))))
    clock.cancel(handle)
    clock.advance(0.5)
    assert seen == [("a", 0.1), ("b", pytest.approx(0.25)), ("c", 0.3)]
    assert clock.monotonic() == 0.5


def test_sleep_advances_and_callbacks_may_not() -> None:
    clock = VirtualClock(start_s=0.0)
    clock.sleep(2.0)
    assert clock.monotonic() == 2.0
    errors: list[Exception] = []

    def bad() -> None:
        try:
            clock.advance(1.0)
        except RuntimeError as exc:
            errors.append(exc)

    clock.call_later(0.1, bad)
    clock.advance(1.0)
    assert len(errors) == 1
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_wait_event_jumps_to_the_next_callback() -> None:
    clock = VirtualClock(start_s=0.0)
    event = threading.Event()
    clock.call_at(5.0, event.set)
    started = time.perf_counter()
    assert not wait_event(clock, event, 1.0)
    assert clock.monotonic() == 1.0
    assert wait_event(clock, event, 10.0)
    assert clock.monotonic() == 5.0
    assert time.perf_counter() - started < 0.5  # virtual seconds cost no real time


def test_speed_mode_follows_real_time_scaled() -> None:
    started = time.perf_counter()  # before the clock starts: a pause in between cannot shorten the wait
    clock = VirtualClock(start_s=0.0, speed=100.0)
    event = threading.Event()
    clock.call_later(1.0, event.set)  # one virtual second = 10 ms real
    assert wait_event(clock, event, 5.0)
    assert 0.005 < time.perf_counter() - started < 1.0
    assert clock.monotonic() >= 1.0


def test_system_clock_waits_on_the_event() -> None:
    event = threading.Event()
    threading.Timer(0.01, event.set).start()
    assert wait_event(SYSTEM_CLOCK, event, 2.0)
    assert not wait_event(SYSTEM_CLOCK, threading.Event(), 0.01)


def test_polling_fallback_for_plain_clocks() -> None:
    class Plain:
        def __init__(self) -> None:
            self.t = 0.0

        def monotonic(self) -> float:
            return self.t

        def sleep(self, s: float) -> None:
            self.t += s

    plain = Plain()
    assert not wait_event(plain, threading.Event(), 0.01)
    assert plain.t == pytest.approx(0.01)
