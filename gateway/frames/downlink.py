"""The gateway → node direction (docs/frame-format.md, "Downlink frames").

``DownlinkEncoder`` is the gateway side: acknowledgements (frame type 1) and commands (frame type 2),
made with the node's keys and Dir = 1 in B0/A_i, and the gateway's own downlink counter for the node
(never the uplink one: the two directions must never share a keystream). ``DownlinkDecoder`` is the
node side (simulated nodes, tests, a reference for firmware): it verifies the MIC (or CRC), the node
id and the counter (strictly increasing) before it believes anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.frames.crypto import NodeCrypto
from gateway.frames.encoder import FrameEncoder
from gateway.frames.errors import FrameError, Reason
from gateway.frames.types import Direction, FrameType
from gateway.frames.wire import (
    CRC_LEN,
    FLAG_ACK_REQUESTED,
    FLAG_ENCRYPTED,
    MIC_LEN,
    NODE_ID_LEN_MASK,
    TYPE_MASK,
    TYPE_SHIFT,
    VERSION_SHIFT,
    crc16,
)

ACKED_FCNT_LEN = 2  # an acknowledgement names the low 16 bits of the uplink counter it acknowledges
MAX_GAP = 16384


@dataclass(frozen=True, slots=True)
class Downlink:
    """A verified downlink as the node sees it."""

    frame_type: FrameType
    fcnt: int  # full downlink counter
    acked_fcnt: int | None  # low 16 bits of the acknowledged uplink counter (acknowledgements only)
    command: bytes  # command bytes (empty: a bare acknowledgement)
    confirm: bool  # the node must report the command as acknowledged in its next uplink


class DownlinkEncoder:
    """Builds downlinks for one node; the caller owns (and persists, before sending) the counter."""

    def __init__(self, node_id: int, key: bytes | None, key_epoch: int = 0) -> None:
        self._enc = FrameEncoder(node_id, key, direction=Direction.DOWN, key_epoch=key_epoch)

    def ack(self, fcnt: int, acked_fcnt: int, command: bytes = b"", confirm: bool = False) -> bytes:
        payload = (acked_fcnt & 0xFFFF).to_bytes(ACKED_FCNT_LEN, "little") + bytes(command)
        return self._enc.encode(payload, frame_type=FrameType.ACK, ack_requested=confirm, fcnt=fcnt)

    def command(self, fcnt: int, command: bytes, confirm: bool = False) -> bytes:
        return self._enc.encode(
            bytes(command), frame_type=FrameType.COMMAND, ack_requested=confirm, fcnt=fcnt
        )


class DownlinkDecoder:
    """The node's check of what it hears in its receive window. ``next_fcnt``: the next downlink counter
    it accepts (persist it, like the uplink counter)."""

    def __init__(self, node_id: int, key: bytes | None, key_epoch: int = 0, next_fcnt: int = 0) -> None:
        self.node_id = node_id
        self.next_fcnt = next_fcnt
        self._crypto = None if key is None else NodeCrypto.from_root(key, node_id, Direction.DOWN, key_epoch)

    def decode(self, data: bytes) -> Downlink:
        """A verified downlink, or FrameError (forged, replayed, for another node, not a downlink)."""
        if len(data) < 5:
            raise FrameError(Reason.TOO_SHORT, f"downlink of {len(data)} bytes is too short")
        head = data[0]
        ftype = (head & TYPE_MASK) >> TYPE_SHIFT
        if head >> VERSION_SHIFT != 0 or ftype not in (FrameType.ACK, FrameType.COMMAND):
            raise FrameError(Reason.BAD_VERSION, f"header 0x{head:02x} is not a version-0 downlink")
        n = (head & NODE_ID_LEN_MASK) + 1
        secured = bool(head & FLAG_ENCRYPTED)
        trailer = MIC_LEN if secured else CRC_LEN
        if len(data) < 1 + n + 3 + trailer:
            raise FrameError(Reason.TOO_SHORT, f"downlink of {len(data)} bytes is too short")
        if int.from_bytes(data[1 : 1 + n], "little") != self.node_id:
            raise FrameError(Reason.UNKNOWN_NODE, f"downlink for another node (not {self.node_id:08x})")
        if secured != (self._crypto is not None):
            raise FrameError(
                Reason.BAD_MIC, f"node {self.node_id:08x}: downlink profile does not match the key"
            )
        rx = int.from_bytes(data[1 + n : 3 + n], "little")
        step = (rx - self.next_fcnt) & 0xFFFF
        if step > MAX_GAP:
            raise FrameError(Reason.REPLAY, f"node {self.node_id:08x}: downlink counter {rx} is old (replay)")
        full = self.next_fcnt + step
        msg, tail = data[:-trailer], data[-trailer:]
        if self._crypto is not None:
            if not self._crypto.verify(full, msg, tail):
                raise FrameError(Reason.BAD_MIC, f"node {self.node_id:08x}: downlink MIC mismatch")
            body = self._crypto.crypt(full, msg[4 + n :])
        else:
            if crc16(msg) != int.from_bytes(tail, "little"):
                raise FrameError(Reason.BAD_CRC, f"node {self.node_id:08x}: downlink CRC mismatch")
            body = msg[4 + n :]
        kind = FrameType(ftype)
        acked = None
        if kind is FrameType.ACK:
            if len(body) < ACKED_FCNT_LEN:
                raise FrameError(
                    Reason.BAD_PAYLOAD, f"node {self.node_id:08x}: acknowledgement without counter"
                )
            acked, body = int.from_bytes(body[:ACKED_FCNT_LEN], "little"), body[ACKED_FCNT_LEN:]
        self.next_fcnt = full + 1
        return Downlink(kind, full, acked, bytes(body), bool(head & FLAG_ACK_REQUESTED))
