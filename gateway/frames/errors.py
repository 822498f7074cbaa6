"""Why a packet was rejected: one reason code per rejection, counted by the pipeline."""

from __future__ import annotations

from enum import StrEnum

from gateway.errors import GatewayError


class Reason(StrEnum):
    """Rejection reasons; the values are the stable snake_case names used in stats and logs."""

    TOO_SHORT = "too_short"
    BAD_VERSION = "bad_version"  # format version != 0, or the reserved frame type 3
    BAD_CRC = "bad_crc"
    BAD_MIC = "bad_mic"  # also: a keyed node sent an open frame, or a keyless node an encrypted one
    UNKNOWN_NODE = "unknown_node"
    REPLAY = "replay"  # counter older than the last accepted frame
    DUPLICATE = "duplicate"  # retransmission of the last accepted frame (not an attack)
    COUNTER_GAP = "counter_gap"  # counter further ahead than the configured maximum gap
    UNKNOWN_CODEC = "unknown_codec"
    BAD_PAYLOAD = "bad_payload"
    NOT_FOR_US = "not_for_us"  # RadioHead packet addressed to another station
    MODEL_MISMATCH = "model_mismatch"  # learned-model frame: its check fails under every installed candidate
    UNKNOWN_MODEL = "unknown_model"  # learned-model frame: no installed model has its id and version mod 8


class FrameError(GatewayError):
    """A packet the frame layer rejects; ``reason`` is a :class:`Reason` value, the message one line."""

    reason = Reason.BAD_PAYLOAD.value

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message, reason)
