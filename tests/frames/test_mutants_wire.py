"""Wire constants the mutation run found untested: every header flag on its own bit, the 255-byte limit
on both sides, and a model codec byte without a version refused with ValueError."""

from __future__ import annotations

import pytest

from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node, wire
from gateway.frames.types import FrameType, PayloadCodec


def test_each_header_field_has_its_own_bits() -> None:
    assert wire.header_byte(FrameType.TELEMETRY, False, False, 1) == 0x00
    assert wire.header_byte(FrameType.TELEMETRY, False, True, 1) == 0x04
    assert wire.header_byte(FrameType.TELEMETRY, True, False, 1) == 0x08
    assert wire.header_byte(FrameType.COMMAND, False, False, 4) == 0x23
    assert wire.header_byte(FrameType.ACK, True, True, 2) == 0x1D


def test_a_frame_of_exactly_255_bytes_passes_and_256_is_refused() -> None:
    enc = FrameEncoder(5)
    frame = enc.encode(bytes(255 - 7), fcnt=0)  # 1 + 1 + 2 + 1 + payload + 2
    assert len(frame) == 255
    assert FrameDecoder([Node(5, "five")]).decode(frame).payload == bytes(248)
    with pytest.raises(ValueError):
        enc.encode(bytes(249), fcnt=1)
    too_long = frame[:-2] + b"\x00" + wire.crc16(frame[:-2] + b"\x00").to_bytes(2, "little")
    with pytest.raises(FrameError) as err:
        FrameDecoder([Node(5, "five")]).decode(too_long)
    assert err.value.reason == "bad_payload"


def test_model_codec_byte_needs_an_id_and_a_version() -> None:
    with pytest.raises(ValueError):
        wire.codec_byte(PayloadCodec.MODEL, 3, None)
    with pytest.raises(ValueError):
        wire.codec_byte(PayloadCodec.MODEL, 3, -1)
    with pytest.raises(ValueError):
        wire.codec_byte(PayloadCodec.MODEL, None, 1)
    assert wire.codec_byte(PayloadCodec.MODEL, 15, 9) == 0x80 | (15 << 3) | 1
