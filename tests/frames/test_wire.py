"""CRC parameters, header and codec bytes, overhead targets."""

from __future__ import annotations

import crcmod
import crcmod.crcmod
import pytest

from gateway.frames import wire
from gateway.frames.errors import FrameError
from gateway.frames.types import FrameType, PayloadCodec


def test_crc16_is_ccitt_false_with_its_check_value() -> None:
    assert wire.crc16(b"123456789") == wire.CRC16_CHECK == 0x29B1
    bitwise = crcmod.mkCrcFun(0x11021, initCrc=0xFFFF, rev=False, xorOut=0)  # built from the parameters
    assert wire.crc16(b"\x00\x05\x00\x00\x01") == bitwise(b"\x00\x05\x00\x00\x01")


def test_crcmod_c_extension_is_used() -> None:
    assert crcmod.crcmod._usingExtension, "crcmod's C extension is missing: the frame hot path needs it"


@pytest.mark.parametrize(
    ("node_id", "length"), [(0, 1), (255, 1), (256, 2), (65535, 2), (65536, 3), (2**24, 4)]
)
def test_node_id_takes_the_shortest_length(node_id: int, length: int) -> None:
    assert wire.node_id_len(node_id) == length
    with pytest.raises(ValueError):
        wire.node_id_len(2**32)


def test_overhead_meets_targets() -> None:
    assert wire.overhead(65535, secured=False) == 8
    assert wire.overhead(2**32 - 1, secured=True) == 12
    assert wire.overhead(42, secured=True) == 9


def test_header_byte_layout() -> None:
    assert wire.header_byte(FrameType.TELEMETRY, False, False, 1) == 0x00
    assert wire.header_byte(FrameType.COMMAND, True, True, 4) == 0b0010_1111
    assert wire.header_byte(FrameType.ACK, True, False, 1) == 0x18


def test_codec_byte_round_trip() -> None:
    assert wire.codec_byte(PayloadCodec.RAW) == 0 and wire.codec_byte(PayloadCodec.LPP) == 1
    for model_id in range(16):
        for version in range(20):
            byte = wire.codec_byte(PayloadCodec.MODEL, model_id, version)
            assert wire.parse_codec_byte(byte) == (PayloadCodec.MODEL, model_id, version % 8)
    assert wire.codec_byte(PayloadCodec.MODEL, 3, 9) == 0x99
    assert wire.codec_byte(PayloadCodec.INFO) == 2
    assert wire.parse_codec_byte(2) == (PayloadCodec.INFO, None, None)
    for reserved in (0x03, 0x40, 0x7F):
        with pytest.raises(FrameError) as err:
            wire.parse_codec_byte(reserved)
        assert err.value.reason == "unknown_codec"
    with pytest.raises(ValueError):
        wire.codec_byte(PayloadCodec.MODEL, 16, 1)
