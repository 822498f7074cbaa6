"""Counter reconstruction (ChirpStack's rule) across the 16-bit rollover."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.frames.counter import AHEAD, DUPLICATE, NEW, reconstruct


def test_first_frame_and_steps() -> None:
    assert reconstruct(0, 0) == (NEW, 0)
    assert reconstruct(0, 0xFFFF) == (AHEAD, 0xFFFF)  # no frame accepted yet: not a duplicate
    assert reconstruct(10, 10) == (NEW, 10)
    assert reconstruct(10, 9) == (DUPLICATE, 9)
    assert reconstruct(10, 8) == (AHEAD, 10 + 0xFFFE)
    assert reconstruct(10, 10 + 16384) == (NEW, 10 + 16384)
    assert reconstruct(10, 10 + 16385) == (AHEAD, 10 + 16385)
    assert reconstruct(10, 20, max_gap=5) == (AHEAD, 20)


def test_rollover() -> None:
    assert reconstruct(0xFFFF, 0xFFFF) == (NEW, 0xFFFF)
    assert reconstruct(0x10000, 0xFFFF) == (DUPLICATE, 0xFFFF)
    assert reconstruct(0x10000, 0x0000) == (NEW, 0x10000)
    assert reconstruct(0x1FFFE, 0x0003) == (NEW, 0x20003)
    assert reconstruct(0xFFFF_FFF0, 0xFFF5) == (NEW, 0xFFFF_FFF5)


@settings(deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 16384))
def test_any_step_within_the_gap_is_recovered(next_fcnt: int, step: int) -> None:
    full = next_fcnt + step
    assert reconstruct(next_fcnt, full & 0xFFFF) == (NEW, full)


@settings(deadline=None)
@given(st.integers(1, 2**32), st.integers(2, 0x10000 - 16385))
def test_old_counters_read_as_ahead_by_one_wrap(next_fcnt: int, back: int) -> None:
    assert reconstruct(next_fcnt, (next_fcnt - 1) & 0xFFFF) == (DUPLICATE, next_fcnt - 1)
    old = next_fcnt - back
    verdict, full = reconstruct(next_fcnt, old & 0xFFFF)
    assert verdict == AHEAD and full - 0x10000 == old
