"""Values that cross from the frame layer to the pipeline: frozen, slotted, typed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class FrameType(IntEnum):
    """Header bits 5–4."""

    TELEMETRY = 0
    ACK = 1
    COMMAND = 2
    EXTENSION = 3  # reserved: rejected as bad_version by this version of the decoder

    @property
    def label(self) -> str:
        return self.name.lower()


class Direction(IntEnum):
    """The direction byte of the LoRaWAN B0/Ai blocks: 0 node → gateway, 1 gateway → node."""

    UP = 0
    DOWN = 1


class PayloadCodec(StrEnum):
    """How the payload bytes are to be read (``radiohead``: RadioHead packet, payload per the registry)."""

    RAW = "raw"
    LPP = "lpp"
    MODEL = "model"
    INFO = "info"  # a node's report of its firmware and the models it holds (gateway.frames.nodeinfo)
    RADIOHEAD = "radiohead"


class NodeFormat(StrEnum):
    """What a node puts on the air, declared per node in the registry."""

    FRAME = "frame"  # this project's frame (docs/frame-format.md)
    LPP = "lpp"  # bare Cayenne LPP, no header (e.g. arduino-LoRa sketches)
    RADIOHEAD = "radiohead"  # RH_RF95 4-byte header, then LPP or raw data
    RAW = "raw"  # bare bytes, passed through as hex

    @property
    def bare(self) -> bool:
        """True when a packet in this format carries nothing that names its sender."""
        return self in (NodeFormat.LPP, NodeFormat.RAW)


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded value: ``value`` is a number, a dict (accelerometer, GPS …) or a hex string (raw)."""

    channel: int
    type: str
    value: float | int | list | dict | str
    unit: str | None

    def to_dict(self) -> dict:
        return {"channel": self.channel, "type": self.type, "value": self.value, "unit": self.unit}


@dataclass(frozen=True, slots=True)
class RadioHeadHeader:
    """The RH_RF95 header: to, from, id, flags (high nibble: 0x80 ACK, 0x40 RETRY)."""

    to: int
    sender: int
    id: int
    flags: int

    @property
    def broadcast(self) -> bool:
        return self.to == 0xFF

    @property
    def ack(self) -> bool:
        return bool(self.flags & 0x80)

    @property
    def retry(self) -> bool:
        return bool(self.flags & 0x40)


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A verified packet. ``fcnt`` is the full 32-bit counter (for lpp/radiohead/raw nodes: the gateway's
    own receive sequence, since those formats carry none); ``next_fcnt`` is what to persist with it."""

    node_id: int
    node_name: str
    fcnt: int
    next_fcnt: int
    frame_type: FrameType
    ack_requested: bool
    encrypted: bool
    codec: PayloadCodec
    model_id: int | None
    model_version: int | None  # the installed version whose fingerprint the frame's CRC/MIC verified under
    payload: bytes  # decrypted
    values: list[Reading] | None  # None when the payload needs a learned model
    format: NodeFormat = NodeFormat.FRAME
    radiohead: RadioHeadHeader | None = None
    counter_epoch: int = 0  # registry generation of the counter (bumped by reset-counter)

    def to_dict(self) -> dict:
        """JSON-ready form (the CLI's and MQTT's edge)."""
        out: dict = {
            "format": self.format.value,
            "node_id": self.node_id,
            "node_name": self.node_name,
            "fcnt": self.fcnt,
            "frame_type": self.frame_type.label,
            "ack_requested": self.ack_requested,
            "encrypted": self.encrypted,
            "codec": self.codec.value,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "payload_hex": self.payload.hex(),
            "values": None if self.values is None else [r.to_dict() for r in self.values],
        }
        if self.radiohead is not None:
            rh = self.radiohead
            out["radiohead"] = {"to": rh.to, "from": rh.sender, "id": rh.id, "flags": rh.flags}
        return out
