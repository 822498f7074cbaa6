"""Register helpers: field packing, Frf and FEI conversions, the reference frequencies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.radio import regs


@given(st.integers(0, 255), st.integers(0, 7), st.integers(1, 8), st.data())
def test_field_put_get_roundtrip(reg_value: int, shift: int, width: int, data: st.DataObject) -> None:
    width = min(width, 8 - shift)
    field = regs.Field(0x1D, shift, width)
    value = data.draw(st.integers(0, field.max))
    packed = field.put(reg_value, value)
    assert field.get(packed) == value
    assert packed & ~field.mask & 0xFF == reg_value & ~field.mask & 0xFF  # other bits untouched
    with pytest.raises(ValueError):
        field.put(reg_value, field.max + 1)


@pytest.mark.parametrize(
    ("hz", "frf"), [(868_100_000, 0xD90666), (915_000_000, 0xE4C000), (433_000_000, 0x6C4000)]
)
def test_reference_frequencies(hz: int, frf: int) -> None:
    assert regs.frf_from_hz(hz) == frf


@given(st.integers(137_000_000, 1_020_000_000))
def test_frf_within_half_a_step(hz: int) -> None:
    assert abs(regs.hz_from_frf(regs.frf_from_hz(hz)) - hz) <= regs.FSTEP_HZ / 2 + 1e-6


@given(st.floats(-0.25, 0.25), st.sampled_from(regs.EXACT_BANDWIDTHS_HZ))
def test_fei_roundtrip(fraction: float, bw: float) -> None:
    error_hz = fraction * bw  # a receiver tolerates a quarter of the bandwidth
    step = (2**24 / regs.FXOSC_HZ) * (bw / 1000) / 500
    assert regs.fei_to_hz(regs.hz_to_fei(error_hz, bw), bw) == pytest.approx(error_hz, abs=step)


def test_codes() -> None:
    assert [regs.bw_code(b) for b in regs.BANDWIDTHS_HZ] == list(range(10))
    assert regs.bw_code(7812.5) == 0
    assert regs.cr_code("4/7") == 3 and regs.cr_code(8) == 4
    assert regs.rssi_offset_db(868e6) == -157 and regs.rssi_offset_db(433e6) == -164
    for bad in (regs.bw_code, regs.cr_code):
        with pytest.raises(ValueError):
            bad(3)
