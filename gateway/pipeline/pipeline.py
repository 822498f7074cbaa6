"""RxPacket → verified frame → AcceptedFrame, or a drop counted by reason.

De-duplication lives here: the frame layer rejects a retransmission of the last accepted frame
(``duplicate``) or an older counter (``replay``), and ``accept`` advances the decoder's counter the
moment a frame is queued for storage, so a retransmission arriving while the first copy is still in
the group-commit window is rejected too. The gateway never publishes one frame twice.

Floods of malformed packets cost one counter increment and a DEBUG line each; a WARNING summarises
them at most every ``warn_interval_s`` per reason, so logs stay readable and nothing stops.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from gateway.frames import DecodedFrame, FrameDecoder, FrameError, FrameType, PayloadCodec
from gateway.pipeline.message import AcceptedFrame, RadioMeta
from gateway.radio.packet import CrcState, RxPacket

log = logging.getLogger(__name__)

CRC_POLICIES = ("drop_failed", "require_ok", "check_frame")


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    crc_policy: str = "drop_failed"  # see config/gateway.toml [radio] crc_policy
    warn_interval_s: float = 10.0


class Pipeline:
    """Owned by the service's core thread (the decoder is not thread-safe)."""

    def __init__(
        self,
        decoder: FrameDecoder,
        settings: PipelineSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.decoder = decoder
        self.settings = settings or PipelineSettings()
        if self.settings.crc_policy not in CRC_POLICIES:
            raise ValueError(f"crc policy {self.settings.crc_policy!r} is not one of {CRC_POLICIES}")
        self._clock = clock
        self.received = 0
        self.passed = 0  # passed every check and handed to storage (accepted once its commit is durable)
        self.drops: Counter[str] = Counter()
        self.control: Counter[str] = Counter()  # verified uplinks that are not telemetry, handed on
        self.last_drop: tuple[str, int | None, str] = ("", None, "")
        self._unwarned: Counter[str] = Counter()
        self._last_warn: dict[str, float] = {}
        # Verified non-telemetry uplinks (a node acknowledging a confirmed downlink, a node's info report)
        # go here, if set.
        self.on_control: Callable[[DecodedFrame], None] | None = None
        # Verified retransmissions of the last accepted frame (a node that missed its acknowledgement).
        self.on_duplicate: Callable[[RxPacket], None] | None = None

    def process(self, packet: RxPacket) -> tuple[AcceptedFrame, DecodedFrame] | None:
        """Decide one packet. Accepted telemetry is returned (store it, then call ``accept``)."""
        self.received += 1
        policy = self.settings.crc_policy
        if packet.crc is CrcState.FAILED and policy != "check_frame":
            self._drop("radio_crc_failed", None, "radio CRC failed")
            return None
        if packet.crc is CrcState.ABSENT and policy == "require_ok":
            self._drop("radio_crc_absent", None, "sent without radio CRC")
            return None
        try:
            frame = self.decoder.decode(packet.payload)
        except FrameError as exc:
            self._drop(exc.reason, None, exc.message)
            if exc.reason == "duplicate" and self.on_duplicate is not None:
                self.on_duplicate(packet)
            return None
        if frame.codec is PayloadCodec.INFO:  # what the node holds: not telemetry, never published
            self.decoder.accept(frame)
            self.control["node_info"] += 1
            self.last_drop = ("node_info", frame.node_id, "node info report")  # the packet list's result
            if self.on_control is not None:
                self.on_control(frame)
            return None
        if frame.frame_type is not FrameType.TELEMETRY:
            self.decoder.accept(frame)
            if self.on_control is not None:
                self.on_control(frame)
            self._drop(f"not_telemetry_{frame.frame_type.label}", frame.node_id, "not a telemetry frame")
            return None
        accepted = AcceptedFrame(
            node_id=frame.node_id,
            fcnt=frame.fcnt,
            next_fcnt=frame.next_fcnt,
            format=frame.format.value,
            codec=frame.codec.value,
            model_id=frame.model_id,
            model_version=frame.model_version,
            payload=frame.payload,
            radio=RadioMeta(
                rssi_dbm=packet.rssi_dbm,
                snr_db=packet.snr_db,
                freq_hz=packet.freq_hz,
                freq_error_hz=packet.freq_error_hz,
                sf=packet.sf,
                bw_hz=packet.bw_hz,
                cr=packet.cr,
                crc=packet.crc.value,
                utc_ms=int(packet.utc.timestamp() * 1000),
            ),
            values=None if frame.values is None else tuple(frame.values),
            counter_epoch=frame.counter_epoch,
        )
        return accepted, frame

    def accept(self, frame: DecodedFrame) -> None:
        """The frame is queued for storage: later copies of it are duplicates from now on."""
        self.decoder.accept(frame)
        self.passed += 1

    def _drop(self, reason: str, node_id: int | None, message: str) -> None:
        self.drops[reason] += 1
        self.last_drop = (reason, node_id, message)  # for the status page's packet list
        self._unwarned[reason] += 1
        log.debug("drop %s: %s", reason, message)
        now = self._clock()
        last = self._last_warn.get(reason)
        if last is None or now - last >= self.settings.warn_interval_s:
            n = self._unwarned.pop(reason)
            who = f"node {node_id:08x}: " if node_id is not None else ""
            log.warning("%sdropped %d packet(s) (%s), latest: %s", who, n, reason, message)
            self._last_warn[reason] = now
