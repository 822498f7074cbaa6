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


@dataclass(frozen=True, slots=True)
class RxPacket:
    """A received LoRa packet (contract in docs/architecture.md).

    Packets with a failed or absent CRC are delivered too; the caller decides what to do with them.
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
