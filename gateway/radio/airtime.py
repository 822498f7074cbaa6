"""Time on air of a LoRa packet (SX1276 datasheet 4.1.1.6) and what a duty cycle allows.

Bandwidths are given in nominal Hz (7800 … 500000); the timing uses the exact value behind each
nominal one (7.8 kHz is 500 kHz / 64), so the results match the datasheet to the microsecond.
"""

from __future__ import annotations

import math

from gateway.radio.regs import BANDWIDTHS_HZ, EXACT_BANDWIDTHS_HZ, bw_code, cr_code

LDRO_SYMBOL_LIMIT_S = 0.016  # LowDataRateOptimize mandatory above 16 ms symbols (datasheet 4.1.1.6)


def exact_bandwidth_hz(bw_hz: float) -> float:
    return EXACT_BANDWIDTHS_HZ[bw_code(bw_hz)]


def nominal_bandwidth_hz(bw_hz: float) -> int:
    return BANDWIDTHS_HZ[bw_code(bw_hz)]


def symbol_time_s(sf: int, bw_hz: float) -> float:
    """Tsym = 2^SF / BW."""
    _check_sf(sf)
    return (1 << sf) / exact_bandwidth_hz(bw_hz)


def ldro_required(sf: int, bw_hz: float) -> bool:
    return symbol_time_s(sf, bw_hz) > LDRO_SYMBOL_LIMIT_S


def payload_symbols(
    payload_len: int,
    sf: int,
    cr: str | int = "4/5",
    implicit: bool = False,
    crc: bool = True,
    ldro: bool = False,
) -> int:
    """Npayload = 8 + max(ceil((8PL − 4SF + 28 + 16CRC − 20IH) / (4(SF − 2DE))) · (CR + 4), 0)."""
    _check_sf(sf)
    if not 0 <= payload_len <= 255:
        raise ValueError(f"payload length {payload_len} outside 0..255")
    num = 8 * payload_len - 4 * sf + 28 + 16 * int(crc) - 20 * int(implicit)
    den = 4 * (sf - 2 * int(ldro))
    return 8 + max(math.ceil(num / den) * (cr_code(cr) + 4), 0)


def time_on_air_s(
    payload_len: int,
    sf: int,
    bw_hz: float,
    cr: str | int = "4/5",
    preamble: int = 8,
    implicit: bool = False,
    crc: bool = True,
    ldro: bool | None = None,
) -> float:
    """Seconds on air; ``ldro=None`` applies LowDataRateOptimize when the symbol exceeds 16 ms."""
    if not 6 <= preamble <= 65535:
        raise ValueError(f"preamble length {preamble} outside 6..65535")
    tsym = symbol_time_s(sf, bw_hz)
    de = ldro_required(sf, bw_hz) if ldro is None else ldro
    n_payload = payload_symbols(payload_len, sf, cr, implicit, crc, de)
    return (preamble + 4.25) * tsym + n_payload * tsym


def header_end_s(sf: int, bw_hz: float, preamble: int = 8) -> float:
    """When the explicit header has been demodulated: preamble plus the first 8 symbols."""
    return (preamble + 4.25 + 8) * symbol_time_s(sf, bw_hz)


def packets_per_hour(airtime_s: float, duty_cycle: float = 0.01) -> int:
    """Whole packets a duty cycle (0.01 = 1 %) allows in one hour."""
    if airtime_s <= 0:
        raise ValueError("time on air must be positive")
    if not 0 < duty_cycle <= 1:
        raise ValueError(f"duty cycle {duty_cycle} outside (0, 1]")
    # round before flooring so 3600·0.01/0.036 = 1000 is not lost to float error
    return math.floor(round(3600.0 * duty_cycle / airtime_s, 9))


def _check_sf(sf: int) -> None:
    if not 6 <= sf <= 12:
        raise ValueError(f"spreading factor {sf} outside 6..12")
