"""What the radio hands to the pipeline: one received packet with its link metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class CrcState(Enum):
    """Payload CRC as the chip saw it: checked and good, checked and bad, or not sent by the node."""

    OK = "ok"
    FAILED = "failed"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True, init=False)
class RxPacket:
    """A received LoRa packet (contract in docs/architecture.md).

    Packets with a failed or absent CRC are delivered too; the caller decides what to do with them.
    Immutable; ``__init__`` is written out (the generated frozen one costs a frozen-setattr per
    field, which the radio's per-packet path notices).
    """

    payload: bytes
    rssi_dbm: float  # packet RSSI, HF/LF offset and SNR < 0 correction applied
    snr_db: float  # signed register value / 4
    freq_hz: int  # channel frequency as configured
    freq_error_hz: float  # from FEI
    sf: int  # 6..12
    bw_hz: int  # nominal: 7800 … 500000
    cr: str  # "4/5" … "4/8", from ModemStat (explicit header) or the configuration (implicit)
    crc: CrcState
    monotonic_s: float  # injected clock at RxDone
    utc: datetime  # timezone-aware UTC receive time

    def __init__(
        self,
        payload: bytes,
        rssi_dbm: float,
        snr_db: float,
        freq_hz: int,
        freq_error_hz: float,
        sf: int,
        bw_hz: int,
        cr: str,
        crc: CrcState,
        monotonic_s: float,
        utc: datetime,
    ) -> None:
        _set_payload(self, payload)
        _set_rssi_dbm(self, rssi_dbm)
        _set_snr_db(self, snr_db)
        _set_freq_hz(self, freq_hz)
        _set_freq_error_hz(self, freq_error_hz)
        _set_sf(self, sf)
        _set_bw_hz(self, bw_hz)
        _set_cr(self, cr)
        _set_crc(self, crc)
        _set_monotonic_s(self, monotonic_s)
        _set_utc(self, utc)


# the slots' own setters: what object.__setattr__ would reach, without the frozen check per field
(
    _set_payload,
    _set_rssi_dbm,
    _set_snr_db,
    _set_freq_hz,
    _set_freq_error_hz,
    _set_sf,
    _set_bw_hz,
    _set_cr,
    _set_crc,
    _set_monotonic_s,
    _set_utc,
) = (RxPacket.__dict__[name].__set__ for name in RxPacket.__slots__)
