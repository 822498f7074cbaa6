"""The node side of the frame format: what a sensor node (or a simulated one, or a test) transmits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from gateway.frames import lpp, nodeinfo
from gateway.frames.crypto import NodeCrypto
from gateway.frames.types import Direction, FrameType, PayloadCodec, Reading
from gateway.frames.wire import (
    FINGERPRINT_LEN,
    MAX_FCNT,
    MAX_FRAME_LEN,
    codec_byte,
    crc16,
    crc16_bound,
    header_byte,
    node_id_len,
)


class BoundModel(Protocol):
    """What framing needs of a learned model (gateway.codec.Model satisfies it)."""

    model_id: int
    version: int

    @property
    def fingerprint(self) -> bytes: ...

    def encode(self, samples: Any) -> bytes: ...


class FrameEncoder:
    """Builds frames for one node and keeps its counter (``next_fcnt``), like node firmware does.

    ``key`` (16-byte root key) selects the secured profile; ``None`` the open one. ``key_epoch`` is the
    node's session number (docs/frame-format.md, "After a node lost its counter"): the session keys are
    derived from the root key and it, so a node restarting its counter in a new epoch reuses no keystream.
    """

    def __init__(
        self,
        node_id: int,
        key: bytes | None = None,
        *,
        next_fcnt: int = 0,
        direction: Direction = Direction.UP,
        key_epoch: int = 0,
    ) -> None:
        self.node_id = node_id
        self._id_len = node_id_len(node_id)
        self._id_bytes = node_id.to_bytes(self._id_len, "little")
        self._crypto = None if key is None else NodeCrypto.from_root(key, node_id, direction, key_epoch)
        if not 0 <= next_fcnt <= MAX_FCNT:
            raise ValueError(f"counter {next_fcnt} is outside 0..0xFFFFFFFF")
        self.next_fcnt = next_fcnt
        self.key_epoch = key_epoch

    @property
    def secured(self) -> bool:
        return self._crypto is not None

    def encode(
        self,
        payload: bytes,
        *,
        codec: PayloadCodec = PayloadCodec.RAW,
        model_id: int | None = None,
        model_version: int | None = None,
        fingerprint: bytes | None = None,
        frame_type: FrameType = FrameType.TELEMETRY,
        ack_requested: bool = False,
        fcnt: int | None = None,
    ) -> bytes:
        """One frame. Without ``fcnt`` the next counter is used and advanced; with it (a retransmission,
        a test) that counter is used and ``next_fcnt`` only moves forward. A learned-model frame needs
        the model's 8-byte ``fingerprint``: its CRC/MIC covers it (docs/frame-format.md)."""
        if frame_type is FrameType.EXTENSION:
            raise ValueError("frame type 3 is reserved")
        if codec is PayloadCodec.MODEL:
            if fingerprint is None or len(fingerprint) != FINGERPRINT_LEN:
                raise ValueError(f"a learned-model frame needs the {FINGERPRINT_LEN}-byte model fingerprint")
            bound = bytes(fingerprint)
        elif fingerprint is not None:
            raise ValueError("only learned-model frames are bound to a fingerprint")
        else:
            bound = b""
        full = self.next_fcnt if fcnt is None else fcnt
        if not 0 <= full <= MAX_FCNT:
            raise ValueError(f"counter {full} is outside 0..0xFFFFFFFF (re-key the node)")
        secured = self._crypto is not None
        head = (
            bytes((header_byte(frame_type, secured, ack_requested, self._id_len),))
            + self._id_bytes
            + bytes((full & 0xFF, (full >> 8) & 0xFF, codec_byte(codec, model_id, model_version)))
        )
        size = len(head) + len(payload) + (4 if secured else 2)
        if size > MAX_FRAME_LEN:
            raise ValueError(f"a frame of {size} bytes exceeds {MAX_FRAME_LEN}")
        if self._crypto is not None:
            msg = head + self._crypto.crypt(full, bytes(payload))
            frame = msg + self._crypto.mic(full, msg, bound)
        else:
            msg = head + bytes(payload)
            frame = msg + (crc16_bound(bound, msg) if bound else crc16(msg)).to_bytes(2, "little")
        self.next_fcnt = max(self.next_fcnt, full + 1)
        return frame

    def encode_model(self, model: BoundModel, samples: Any, **options: Any) -> bytes:
        """A telemetry frame of ``samples`` (N × C quantised) coded and bound by ``model``."""
        return self.encode(
            model.encode(samples),
            codec=PayloadCodec.MODEL,
            model_id=model.model_id,
            model_version=model.version,
            fingerprint=model.fingerprint,
            **options,
        )

    def encode_info(self, info: nodeinfo.NodeInfo, **options: Any) -> bytes:
        """A node-info frame (codec byte 0x02): firmware version and the models the node holds."""
        return self.encode(nodeinfo.encode(info), codec=PayloadCodec.INFO, **options)

    def encode_lpp(self, readings: Iterable[Reading | tuple], **options: object) -> bytes:
        """A telemetry frame carrying Cayenne LPP readings."""
        return self.encode(lpp.encode(readings), codec=PayloadCodec.LPP, **options)  # type: ignore[arg-type]
