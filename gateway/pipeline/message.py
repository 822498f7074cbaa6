"""What the pipeline hands to the outbox: an accepted frame, small enough to store per packet.

The outbox stores the frame (decrypted payload, codec, radio metadata), not the rendered JSON: a stored
row is ~60 bytes instead of ~400, which is what keeps SD-card writes near 100–200 bytes per frame, and
it lets a frame whose model is not installed yet be decoded later from the same row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class RadioMeta:
    """Per-packet radio metadata, as published under ``radio``."""

    rssi_dbm: float
    snr_db: float
    freq_hz: int
    freq_error_hz: float
    sf: int
    bw_hz: int
    cr: str
    crc: str  # "ok" | "failed" | "absent"
    utc_ms: int  # receive time, Unix milliseconds

    @property
    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.utc_ms / 1000.0, tz=UTC)

    def to_dict(self) -> dict:
        return {
            "rssi": self.rssi_dbm,
            "snr": self.snr_db,
            "freq": self.freq_hz,
            "sf": self.sf,
            "bw": self.bw_hz,
            "cr": self.cr,
            "freq_error": self.freq_error_hz,
            "crc": self.crc,
        }


@dataclass(frozen=True, slots=True)
class AcceptedFrame:
    """A frame the frame layer accepted; ``next_fcnt`` is stored with it in the same transaction."""

    node_id: int
    fcnt: int
    next_fcnt: int
    format: str  # NodeFormat value: frame | lpp | radiohead | raw
    codec: str  # PayloadCodec value: raw | lpp | model | radiohead
    model_id: int | None
    model_version: int | None  # the version whose fingerprint the CRC/MIC verified (older rows: mod 8)
    payload: bytes
    radio: RadioMeta
    # Readings the frame layer already decoded (LPP, RadioHead): saves decoding again at publish time.
    # Not stored; a frame loaded from the outbox is decoded from its payload instead.
    values: tuple | None = field(default=None, compare=False, repr=False)
    # The registry's counter epoch the decoder judged this frame under: the counter update matches it, so
    # a frame decoded just before an operator's ``nodes reset-counter`` cannot undo the reset.
    counter_epoch: int = field(default=0, compare=False)

    @property
    def msg_id(self) -> str:
        return message_id(self.node_id, self.fcnt)


@dataclass(frozen=True, slots=True)
class StoredFrame:
    """An accepted frame with its outbox row id (publish order) and state."""

    row_id: int
    frame: AcceptedFrame
    waiting_model: bool = False  # its raw form was published; telemetry follows once a model decodes it


def message_id(node_id: int, fcnt: int) -> str:
    """The stable id consumers de-duplicate on: node id (8 hex digits) and the full 32-bit counter."""
    return f"{node_id:08x}-{fcnt}"
