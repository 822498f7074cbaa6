"""The provisioning line protocol: frames, message types, fields (docs/provisioning.md is the spec).

Frame: ``A5 | LEN | TYPE | SEQ | PAYLOAD (LEN bytes) | CRC-16 (LE)``; the CRC (CRC-16/CCITT-FALSE, as
the radio frames' trailer) covers LEN, TYPE, SEQ and PAYLOAD. Every request is answered by an ACK or a
NAK with the request's sequence number.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from gateway.frames.wire import crc16

PROTOCOL_VERSION = 1
SOF = 0xA5
MAX_PAYLOAD = 64
HEADER_LEN = 4  # SOF, LEN, TYPE, SEQ
OVERHEAD = HEADER_LEN + 2


class MsgType(IntEnum):
    HELLO = 0x01  # payload: host protocol version; ACK: node protocol version, then node text (ASCII)
    SET = 0x02  # payload: field id, value
    GET = 0x03  # payload: field id; ACK: field id, value (the key: its 3-byte check value)
    COMMIT = 0x04  # store everything set so far in persistent memory; ACK once stored
    ACK = 0x06
    NAK = 0x15  # payload: reason code, then an ASCII message


class NakReason(IntEnum):
    BAD_CRC = 1
    UNKNOWN_TYPE = 2
    UNKNOWN_FIELD = 3
    BAD_VALUE = 4
    BAD_LENGTH = 5
    STORAGE = 6
    VERSION = 7

    @property
    def label(self) -> str:
        return self.name.lower()


class Field(IntEnum):
    """Field ids and their little-endian layouts (struct format)."""

    NODE_ID = 0x01
    ROOT_KEY = 0x02
    KEY_EPOCH = 0x03
    FREQUENCY_HZ = 0x10
    SPREADING_FACTOR = 0x11
    BANDWIDTH_HZ = 0x12
    CODING_RATE = 0x13  # denominator: 5..8 for 4/5..4/8
    SYNC_WORD = 0x14
    TX_POWER_DBM = 0x15
    MODEL_ID = 0x20  # 0..15, 0xFF: no model (raw/LPP payloads)
    MODEL_VERSION = 0x21
    INTERVAL_S = 0x30


LAYOUT: dict[Field, str] = {
    Field.NODE_ID: "<I",
    Field.ROOT_KEY: "16s",
    Field.KEY_EPOCH: "<I",
    Field.FREQUENCY_HZ: "<I",
    Field.SPREADING_FACTOR: "<B",
    Field.BANDWIDTH_HZ: "<I",
    Field.CODING_RATE: "<B",
    Field.SYNC_WORD: "<B",
    Field.TX_POWER_DBM: "<b",
    Field.MODEL_ID: "<B",
    Field.MODEL_VERSION: "<H",
    Field.INTERVAL_S: "<I",
}
KCV_LEN = 3  # the key is never read back: GET ROOT_KEY answers AES-128(key, 0^16)[0:3]


def frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes((len(payload), msg_type, seq & 0xFF)) + payload
    return bytes((SOF,)) + body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    seq: int
    payload: bytes


class FrameReader:
    """Bytes in, messages out; resynchronises on the next SOF after garbage or a CRC failure."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.crc_errors = 0

    def feed(self, data: bytes) -> list[Message | None]:
        """Complete messages in ``data`` (None for each frame that failed its CRC)."""
        self._buf += data
        out: list[Message | None] = []
        while True:
            start = self._buf.find(SOF)
            if start < 0:
                self._buf.clear()
                return out
            del self._buf[:start]
            if len(self._buf) < 2:
                return out
            n = self._buf[1]
            if n > MAX_PAYLOAD:
                del self._buf[:1]  # not a frame start
                continue
            if len(self._buf) < OVERHEAD + n:
                return out
            raw = bytes(self._buf[: OVERHEAD + n])
            body = raw[1 : HEADER_LEN + n]
            if crc16(body) != int.from_bytes(raw[-2:], "little"):
                self.crc_errors += 1
                out.append(None)
                del self._buf[:1]
                continue
            del self._buf[: OVERHEAD + n]
            out.append(Message(raw[2], raw[3], raw[HEADER_LEN : HEADER_LEN + n]))


def encode_value(field_id: Field, value: int | bytes) -> bytes:
    return struct.pack(LAYOUT[field_id], value)


def decode_value(field_id: Field, data: bytes) -> int | bytes:
    return struct.unpack(LAYOUT[field_id], data)[0]


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything ``lora-fw provision`` writes to a node."""

    node_id: int
    root_key: bytes | None  # None: open profile (no key is written)
    key_epoch: int = 0
    frequency_hz: int = 868_100_000
    spreading_factor: int = 7
    bandwidth_hz: int = 125_000
    coding_rate: int = 5  # 4/5
    sync_word: int = 0x12
    tx_power_dbm: int = 14
    model_id: int = 0xFF
    model_version: int = 0
    interval_s: int = 60

    def fields(self) -> list[tuple[Field, int | bytes]]:
        out: list[tuple[Field, int | bytes]] = [(Field.NODE_ID, self.node_id)]
        if self.root_key is not None:
            out += [(Field.ROOT_KEY, self.root_key), (Field.KEY_EPOCH, self.key_epoch)]
        out += [
            (Field.FREQUENCY_HZ, self.frequency_hz),
            (Field.SPREADING_FACTOR, self.spreading_factor),
            (Field.BANDWIDTH_HZ, self.bandwidth_hz),
            (Field.CODING_RATE, self.coding_rate),
            (Field.SYNC_WORD, self.sync_word),
            (Field.TX_POWER_DBM, self.tx_power_dbm),
            (Field.MODEL_ID, self.model_id),
            (Field.MODEL_VERSION, self.model_version),
            (Field.INTERVAL_S, self.interval_s),
        ]
        return out


def key_check_value(key: bytes) -> bytes:
    """AES-128(key, 16 zero bytes)[0:3]: proves the node holds the key without reading it back."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(bytes(16))[:KCV_LEN]
