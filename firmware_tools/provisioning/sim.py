"""A simulated node: the node side of the provisioning protocol on a file descriptor (a pty's end).

Tests drive the real host code against it; its switches produce every failure the host must name.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from dataclasses import dataclass, field

from firmware_tools.provisioning.protocol import (
    LAYOUT,
    PROTOCOL_VERSION,
    Field,
    FrameReader,
    Message,
    MsgType,
    NakReason,
    decode_value,
    encode_value,
    frame,
    key_check_value,
)

BANDWIDTHS_HZ = (7_800, 10_400, 15_600, 20_800, 31_250, 41_700, 62_500, 125_000, 250_000, 500_000)


def check_value(field_id: Field, value: int | bytes) -> str | None:
    """Why a node refuses this value (None: acceptable); the C node side checks the same."""
    if field_id is Field.FREQUENCY_HZ and not 137_000_000 <= value <= 1_020_000_000:  # type: ignore[operator]
        return "frequency outside 137..1020 MHz"
    if field_id is Field.SPREADING_FACTOR and not 6 <= value <= 12:  # type: ignore[operator]
        return "spreading factor outside 6..12"
    if field_id is Field.BANDWIDTH_HZ and value not in BANDWIDTHS_HZ:
        return "bandwidth is not an SX1276 bandwidth"
    if field_id is Field.CODING_RATE and not 5 <= value <= 8:  # type: ignore[operator]
        return "coding rate outside 4/5..4/8"
    if field_id is Field.TX_POWER_DBM and not 2 <= value <= 20:  # type: ignore[operator]
        return "tx power outside 2..20 dBm"
    if field_id is Field.MODEL_ID and not (value <= 15 or value == 0xFF):  # type: ignore[operator]
        return "model id outside 0..15 (0xFF: none)"
    if field_id is Field.INTERVAL_S and value == 0:
        return "interval must be at least 1 s"
    return None


@dataclass
class SimulatedNode:
    """Answers on ``fd`` until :meth:`stop`. Switches: ``silent``, ``bad_crc`` (damage the CRC of the
    first N answers; -1 all), ``nak_field`` (refuse SET of that field), ``version`` (reported protocol
    version), ``refuse_version`` (NAK HELLO with reason version), ``corrupt`` (a field it stores wrongly)."""

    fd: int
    silent: bool = False
    bad_crc: int = 0
    nak_field: Field | None = None
    version: int = PROTOCOL_VERSION
    refuse_version: bool = False
    corrupt: Field | None = None
    text: str = "sim-node 1.0"
    pending: dict[Field, int | bytes] = field(default_factory=dict)
    stored: dict[Field, int | bytes] = field(default_factory=dict)
    received: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._reader = FrameReader()
        self._thread = threading.Thread(target=self._run, name="sim-node", daemon=True)

    def start(self) -> SimulatedNode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 512)
            except OSError:
                return
            for msg in self._reader.feed(data):
                self.received += 1
                if self.silent:
                    continue
                if msg is None:
                    self._send(MsgType.NAK, 0, bytes((NakReason.BAD_CRC,)) + b"frame CRC")
                    continue
                self._answer(msg)

    def _send(self, msg_type: MsgType, seq: int, payload: bytes = b"") -> None:
        out = bytearray(frame(msg_type, seq, payload))
        if self.bad_crc:
            out[-1] ^= 0x5A
            self.bad_crc -= 1 if self.bad_crc > 0 else 0
        os.write(self.fd, bytes(out))

    def _nak(self, seq: int, reason: NakReason, text: str) -> None:
        self._send(MsgType.NAK, seq, bytes((reason,)) + text.encode("ascii"))

    def _answer(self, msg: Message) -> None:
        if msg.type == MsgType.HELLO:
            if self.refuse_version:
                return self._nak(msg.seq, NakReason.VERSION, f"node speaks v{self.version} only")
            return self._send(MsgType.ACK, msg.seq, bytes((self.version,)) + self.text.encode("ascii"))
        if msg.type in (MsgType.SET, MsgType.GET):
            if not msg.payload or msg.payload[0] not in Field._value2member_map_:
                return self._nak(msg.seq, NakReason.UNKNOWN_FIELD, "unknown field")
            field_id = Field(msg.payload[0])
            if msg.type == MsgType.GET:
                value = self.stored.get(field_id, self.pending.get(field_id))
                if value is None:
                    return self._nak(msg.seq, NakReason.UNKNOWN_FIELD, f"{field_id.name} not set")
                data = key_check_value(value) if field_id is Field.ROOT_KEY else encode_value(field_id, value)
                return self._send(MsgType.ACK, msg.seq, bytes((field_id,)) + data)
            raw = msg.payload[1:]
            if len(raw) != struct.calcsize(LAYOUT[field_id]):
                return self._nak(msg.seq, NakReason.BAD_LENGTH, f"{field_id.name}: {len(raw)} bytes")
            value = decode_value(field_id, raw)
            problem = check_value(field_id, value)
            if field_id == self.nak_field:
                problem = "refused by the simulated node"
            if problem:
                return self._nak(msg.seq, NakReason.BAD_VALUE, f"{field_id.name}: {problem}")
            if field_id == self.corrupt:  # a node with a flash bug: read-back must catch it
                value = bytes(16) if isinstance(value, bytes) else value ^ 1
            self.pending[field_id] = value
            return self._send(MsgType.ACK, msg.seq)
        if msg.type == MsgType.COMMIT:
            self.stored.update(self.pending)
            return self._send(MsgType.ACK, msg.seq)
        return self._nak(msg.seq, NakReason.UNKNOWN_TYPE, f"type 0x{msg.type:02x}")
