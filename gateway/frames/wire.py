"""On-air layout of the frame (docs/frame-format.md): header bits, codec byte, CRC-16, sizes.

All multi-byte fields are little-endian. Wire constants live here and nowhere else.
"""

from __future__ import annotations

import crcmod.predefined

from gateway.frames.errors import FrameError, Reason
from gateway.frames.types import FrameType, PayloadCodec

FORMAT_VERSION = 0

# Header byte (byte 0).
VERSION_SHIFT = 6
TYPE_SHIFT = 4
TYPE_MASK = 0x30
FLAG_ENCRYPTED = 0x08
FLAG_ACK_REQUESTED = 0x04
NODE_ID_LEN_MASK = 0x03  # node id length − 1

# Codec byte.
CODEC_RAW = 0x00
CODEC_LPP = 0x01
CODEC_INFO = 0x02  # node info: firmware version and the models the node holds (gateway.frames.nodeinfo)
CODEC_MODEL_FLAG = 0x80  # 1mmmmvvv: model id (4 bits), version mod 8 (3 bits)

CRC_LEN = 2
MIC_LEN = 4
MAX_NODE_ID = 0xFFFF_FFFF
MAX_FCNT = 0xFFFF_FFFF
MAX_FRAME_LEN = 255  # SX1276 FIFO / LoRa payload limit

# CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740): poly 0x1021, init 0xFFFF, refin/refout false,
# xorout 0x0000, check("123456789") = 0x29B1. crcmod uses its C extension when built (crcmod-plus wheels).
crc16 = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")
CRC16_CHECK = 0x29B1
CRC16_INIT = 0xFFFF

# A learned-model frame's check covers the model's 8-byte fingerprint as implicit associated data
# (prefixed, never sent): a frame checked under another model fails instead of decoding to garbage.
FINGERPRINT_LEN = 8
_PREFIX_STATES: dict[bytes, int] = {}


def crc16_bound(fingerprint: bytes, data: bytes) -> int:
    """CRC-16/CCITT-FALSE over ``fingerprint || data``; the prefix's register state is cached."""
    state = _PREFIX_STATES.get(fingerprint)
    if state is None:
        if len(fingerprint) != FINGERPRINT_LEN:
            raise ValueError(f"a model fingerprint has {FINGERPRINT_LEN} bytes, not {len(fingerprint)}")
        if len(_PREFIX_STATES) > 1024:  # models come and go rarely; never grow without bound
            _PREFIX_STATES.clear()
        state = _PREFIX_STATES[fingerprint] = crc16(fingerprint)
    return crc16(data, state)


def node_id_len(node_id: int) -> int:
    """Shortest little-endian length (1..4 bytes) that holds ``node_id``."""
    if not 0 <= node_id <= MAX_NODE_ID:
        raise ValueError(f"node id {node_id} is outside 0..0xFFFFFFFF")
    return 1 if node_id < 0x100 else 2 if node_id < 0x1_0000 else 3 if node_id < 0x100_0000 else 4


def header_byte(frame_type: FrameType, encrypted: bool, ack_requested: bool, id_len: int) -> int:
    return (
        (FORMAT_VERSION << VERSION_SHIFT)
        | (int(frame_type) << TYPE_SHIFT)
        | (FLAG_ENCRYPTED if encrypted else 0)
        | (FLAG_ACK_REQUESTED if ack_requested else 0)
        | (id_len - 1)
    )


def codec_byte(codec: PayloadCodec, model_id: int | None = None, model_version: int | None = None) -> int:
    """The codec byte for ``codec``; a model names its id (0..15) and version (taken modulo 8)."""
    if codec is PayloadCodec.RAW:
        return CODEC_RAW
    if codec is PayloadCodec.LPP:
        return CODEC_LPP
    if codec is PayloadCodec.INFO:
        return CODEC_INFO
    if codec is PayloadCodec.MODEL:
        if model_id is None or not 0 <= model_id <= 15:
            raise ValueError(f"model id {model_id} is outside 0..15")
        if model_version is None or model_version < 0:
            raise ValueError(f"model version {model_version} must be ≥ 0")
        return CODEC_MODEL_FLAG | (model_id << 3) | (model_version & 0x07)
    raise ValueError(f"codec {codec.value} has no codec byte in a frame")


def parse_codec_byte(value: int) -> tuple[PayloadCodec, int | None, int | None]:
    """(codec, model id, model version mod 8); reserved values 0x03–0x7F raise unknown_codec."""
    if value & CODEC_MODEL_FLAG:
        return PayloadCodec.MODEL, (value >> 3) & 0x0F, value & 0x07
    if value == CODEC_LPP:
        return PayloadCodec.LPP, None, None
    if value == CODEC_RAW:
        return PayloadCodec.RAW, None, None
    if value == CODEC_INFO:
        return PayloadCodec.INFO, None, None
    raise FrameError(Reason.UNKNOWN_CODEC, f"codec byte 0x{value:02x} is reserved")


def overhead(node_id: int, secured: bool) -> int:
    """Bytes a frame adds to its payload: header, node id, counter, codec byte, CRC or MIC."""
    return 1 + node_id_len(node_id) + 2 + 1 + (MIC_LEN if secured else CRC_LEN)
