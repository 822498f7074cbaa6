"""Tests that kill the airtime mutants that survived bench/mutation.py: header end, boundaries of the
checked ranges, a ceiling step of the payload formula, and packets_per_hour never rounding up."""

from __future__ import annotations

import pytest

from gateway.radio import airtime
from gateway.radio.regs import BANDWIDTHS_HZ


def test_header_end_is_preamble_plus_sync_plus_eight_symbols() -> None:
    # SF7/125 kHz: 1.024 ms symbols; 8 preamble + 4.25 sync + 8 header symbols = 20.736 ms
    assert airtime.header_end_s(7, 125_000) == pytest.approx(20.736e-3, abs=1e-12)
    assert airtime.header_end_s(7, 125_000, preamble=6) == pytest.approx(18.688e-3, abs=1e-12)


def test_payload_symbols_at_a_ceiling_step() -> None:
    # SF7, 5 bytes, CRC on: (40 - 28 + 28 + 16) / 28 = 2 exactly; one bit more would be a third block
    assert airtime.payload_symbols(5, 7) == 8 + 2 * 5
    assert airtime.payload_symbols(6, 7, crc=False) == 8 + 2 * 5  # (48 - 28 + 28) / 28 → 2
    assert airtime.payload_symbols(7, 7, implicit=True) == 8 + 2 * 5  # (56 + 16 - 20) / 28 → 2


def test_range_edges_are_accepted() -> None:
    assert airtime.symbol_time_s(6, 125_000) == pytest.approx(64 / 125_000)
    assert airtime.symbol_time_s(12, 125_000) == pytest.approx(4096 / 125_000)
    assert airtime.time_on_air_s(10, 7, 125_000, preamble=6) < airtime.time_on_air_s(10, 7, 125_000)
    assert airtime.time_on_air_s(10, 7, 125_000, preamble=65535) > 60.0
    for bad in ({"preamble": 5}, {"preamble": 65536}):
        with pytest.raises(ValueError):
            airtime.time_on_air_s(10, 7, 125_000, **bad)
    for sf in (5, 13):
        with pytest.raises(ValueError):
            airtime.symbol_time_s(sf, 125_000)


def test_packets_per_hour_refuses_zero_airtime_and_impossible_duty_cycles() -> None:
    for bad in ((0.0, 0.01), (-1.0, 0.01), (0.1, 0.0), (0.1, 1.5), (0.1, 2.0)):
        with pytest.raises(ValueError):
            airtime.packets_per_hour(*bad)
    assert airtime.packets_per_hour(1.0, 1.0) == 3600


def test_packets_per_hour_never_exceeds_the_duty_cycle() -> None:
    # just too long for 1000 packets in 36 s: 999, never 1000
    assert airtime.packets_per_hour(0.0360001) == 999
    for sf in range(6, 13):
        for bw in BANDWIDTHS_HZ:
            for payload in (0, 1, 16, 51, 255):
                toa = airtime.time_on_air_s(payload, sf, bw)
                for dc in (0.001, 0.01, 0.1):
                    n = airtime.packets_per_hour(toa, dc)
                    budget = 3600.0 * dc
                    assert n * toa <= budget * (1 + 1e-12), (sf, bw, payload, dc)
                    assert (n + 1) * toa > budget, (sf, bw, payload, dc)
