"""Packet bytes → :class:`DecodedFrame`, or :class:`FrameError` with a reason. Decides, never stores.

``FrameDecoder.decode`` is the pipeline's one entry point. It classifies the packet among the formats
declared in the registry (docs/frame-format.md, "Telling formats apart"):

1. our frame — header version 0 and a valid CRC (open) or MIC (secured) for a registered ``frame`` node;
2. RadioHead — byte 1 (FROM) is the address of a registered ``radiohead`` node;
3. a bare payload (``lpp``/``raw``) — attributed only when exactly one bare node is registered, or
   when the caller names the node (``node_hint``), since a bare payload cannot name its sender.

Counters live in memory here; ``accept()`` advances them once the service has queued the frame, and
``DecodedFrame.next_fcnt`` is what the service persists. Not thread-safe: one owner thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.frames import lpp, nodeinfo, radiohead
from gateway.frames.counter import AHEAD, DEFAULT_MAX_GAP, DUPLICATE, NEW, WRAP, reconstruct
from gateway.frames.crypto import MAX_EPOCH, NodeCrypto
from gateway.frames.errors import FrameError, Reason
from gateway.frames.registry import Node, NodeRegistry
from gateway.frames.types import (
    DecodedFrame,
    Direction,
    FrameType,
    NodeFormat,
    PayloadCodec,
    RadioHeadHeader,
    Reading,
)
from gateway.frames.wire import (
    CODEC_MODEL_FLAG,
    MAX_FCNT,
    MAX_FRAME_LEN,
    crc16,
    crc16_bound,
    parse_codec_byte,
)

log = logging.getLogger(__name__)

# (model id, version mod 8) → installed (version, 8-byte fingerprint) pairs, newest first. Injected
# (gateway.pipeline.models builds one from the model store) so that frames never imports codec.
ModelCandidates = Callable[[int, int], Sequence[tuple[int, bytes]]]
_UNBOUND: tuple[tuple[int | None, bytes], ...] = ((None, b""),)  # raw/LPP frames: nothing prefixed

REPLAY = "replay"
# Rejections that a registry change (node added, counter reset) may turn into acceptance.
_REFRESH_ON = frozenset((Reason.UNKNOWN_NODE.value, Reason.REPLAY.value, Reason.COUNTER_GAP.value))
NO_COUNTER = "no counter in this format"
COUNTER_GAP = "counter_gap"
_FRAME_TYPES = (FrameType.TELEMETRY, FrameType.ACK, FrameType.COMMAND, FrameType.EXTENSION)
# Rejections reached only after the CRC/MIC verified: the packet certainly is one of our frames.
_VERIFIED = frozenset(
    r.value
    for r in (Reason.REPLAY, Reason.DUPLICATE, Reason.COUNTER_GAP, Reason.UNKNOWN_CODEC, Reason.BAD_PAYLOAD)
)


@dataclass(frozen=True, slots=True)
class DecoderSettings:
    """``radiohead_address``: the gateway's own RadioHead address; packets to other addresses (not
    broadcast) are ``not_for_us``. None accepts every TO (a listening gateway)."""

    max_gap: int = DEFAULT_MAX_GAP
    radiohead_address: int | None = None
    direction: Direction = Direction.UP
    refresh_interval_s: float = 1.0  # least time between registry re-reads prompted by unknown senders


class _NextEpoch(FrameError):
    """A frame that fails its MIC under the node's key epoch but verifies under the next one: authentic,
    so it may prompt a registry re-read (the operator may just have run ``reset-counter --new-epoch``)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.BAD_MIC, message)


class _State:
    """A node's in-memory decoding state. ``next_crypto`` holds the keys of the next key epoch, tried
    only when a frame fails under the current one."""

    __slots__ = ("crypto", "epoch", "key", "last_rh_id", "next", "next_crypto", "node")

    def __init__(self, node: Node, direction: Direction) -> None:
        self.node = node
        self.key = node.key
        key, epoch, nid = node.key, node.key_epoch, node.node_id
        self.crypto = None if key is None else NodeCrypto.from_root(key, nid, direction, epoch)
        self.next_crypto = (
            None
            if key is None or epoch >= MAX_EPOCH
            else NodeCrypto.from_root(key, nid, direction, epoch + 1)
        )
        self.next = node.next_fcnt
        self.epoch = node.counter_epoch
        self.last_rh_id: int | None = None


def _rx16(data: bytes) -> int:
    """The on-air counter of a frame; in a new key epoch also its full counter (the epoch starts at 0)."""
    at = 2 + (data[0] & 0x03)
    return data[at] | (data[at + 1] << 8)


def _raw_values(payload: bytes) -> list[Reading]:
    return [Reading(0, "raw", payload.hex(), None)]


class FrameDecoder:
    """Verifies and decodes packets for the nodes of ``registry`` (a NodeRegistry or a list of Nodes)."""

    def __init__(
        self,
        registry: NodeRegistry | Iterable[Node],
        settings: DecoderSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        models: ModelCandidates | None = None,
    ) -> None:
        """``models``: the installed learned-model candidates (see :data:`ModelCandidates`); without
        it every learned-model frame is ``unknown_model``."""
        self.settings = settings or DecoderSettings()
        self._models = models
        self._registry = registry if isinstance(registry, NodeRegistry) else None
        self._static = None if self._registry is not None else list(registry)
        self._clock = clock
        self._max_gap = self.settings.max_gap
        self._states: dict[int, _State] = {}
        self._by_rh: dict[int, _State] = {}
        self._bare: list[_State] = []
        self._last_reload = float("-inf")
        self.reload()

    # -- registry ------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the registry. A node's in-memory counter survives unless the operator reset it
        (its epoch changed); then the stored value wins."""
        nodes = self._registry.nodes() if self._registry is not None else list(self._static or ())
        direction = self.settings.direction
        states: dict[int, _State] = {}
        for node in nodes:
            old = self._states.get(node.node_id)
            if (
                old is not None
                and old.key == node.key
                and old.node.key_epoch == node.key_epoch
                and old.node.format is node.format
            ):
                state = old
                if node.counter_epoch == old.epoch:
                    state.next = max(old.next, node.next_fcnt)
                else:
                    state.next, state.epoch = node.next_fcnt, node.counter_epoch
                state.node = node
            else:
                state = _State(node, direction)
            states[node.node_id] = state
        self._states = states
        self._by_rh = {
            s.node.radiohead_address: s
            for s in states.values()
            if s.node.format is NodeFormat.RADIOHEAD and s.node.radiohead_address is not None
        }
        self._bare = [s for s in states.values() if s.node.format.bare]
        self._last_reload = self._clock()
        log.debug("decoder loaded %d nodes", len(states))

    def _refresh_due(self) -> bool:
        return self._clock() - self._last_reload >= self.settings.refresh_interval_s

    def next_fcnt(self, node_id: int) -> int | None:
        """The next expected counter of a node (None if unknown)."""
        state = self._states.get(node_id)
        return None if state is None else state.next

    # -- the pipeline's entry points -----------------------------------------------------------------

    def decode(self, data: bytes, node_hint: int | None = None) -> DecodedFrame:
        """Classify, verify and decode one packet without changing any state."""
        try:
            return self._classify(data, node_hint)
        except FrameError as exc:
            refresh = exc.reason in _REFRESH_ON or isinstance(exc, _NextEpoch)
            if not refresh or not self._refresh_due():
                raise
            rejected = exc
        try:
            self.reload()  # a node may have been added, or its counter reset, since the last read
        except GatewayError as exc:
            self._last_reload = self._clock()
            log.warning("node registry re-read failed (%s); keeping the loaded nodes", exc.message)
            raise rejected from None
        return self._classify(data, node_hint)

    def accept(self, frame: DecodedFrame) -> None:
        """Advance the node's next expected counter past ``frame`` (call once it is queued for storage)."""
        state = self._states.get(frame.node_id)
        if state is None or state.epoch != frame.counter_epoch:
            return  # removed or reset by the operator meanwhile: the frame must not move the counter
        if frame.next_fcnt > state.next:
            state.next = frame.next_fcnt
        if frame.radiohead is not None:
            state.last_rh_id = frame.radiohead.id

    def inspect(
        self, data: bytes, codec: NodeFormat | None = None, node_hint: int | None = None
    ) -> tuple[DecodedFrame, str]:
        """For ``lora-gw decode``: verify and decode, but report the counter check instead of enforcing it.
        Open frames of unregistered nodes are shown too (nothing to verify them against but the CRC)."""
        if codec is NodeFormat.FRAME:
            return self._frame(bytes(data), enforce=False)
        if codec is NodeFormat.RADIOHEAD:
            hdr, _ = radiohead.parse(data)
            state = self._by_rh.get(hdr.sender)
            if state is None:
                raise FrameError(
                    Reason.UNKNOWN_NODE, f"RadioHead FROM {hdr.sender}: no node has this address"
                )
            return self._radiohead(bytes(data), state), NO_COUNTER
        if codec is not None:
            raise ValueError(f"inspect() cannot force format {codec.value}")
        if node_hint is None and data[:1] and data[0] >> 6 == 0:
            try:
                return self._frame(bytes(data), enforce=False)
            except FrameError as exc:
                if exc.reason in _VERIFIED or exc.reason == Reason.BAD_VERSION.value:
                    raise
        frame = self.decode(data, node_hint)
        return frame, NO_COUNTER if frame.format is not NodeFormat.FRAME else NEW

    # -- classification ------------------------------------------------------------------------------

    def _classify(self, data: bytes, node_hint: int | None) -> DecodedFrame:
        data = bytes(data)
        if node_hint is not None:
            return self._hinted(data, node_hint)
        if not data:
            raise FrameError(Reason.TOO_SHORT, "empty packet")
        frame_error: FrameError | None = None
        if data[0] >> 6:
            frame_error = FrameError(
                Reason.BAD_VERSION, f"frame format version {data[0] >> 6} (this gateway reads 0)"
            )
        else:
            try:
                return self._frame(data)[0]
            except FrameError as exc:
                open_frame = not data[0] & 0x08
                if exc.reason in _VERIFIED or (exc.reason == Reason.UNKNOWN_NODE.value and open_frame):
                    raise
                if self._names_frame_node(data):
                    raise  # a corrupted or forged frame of a registered node: never someone else's
                frame_error = exc
        if len(data) >= radiohead.HEADER_LEN:
            state = self._by_rh.get(data[1])
            if state is not None:
                return self._radiohead(data, state)
        if len(self._bare) == 1:
            try:
                return self._bare_payload(data, self._bare[0])
            except FrameError:
                if frame_error is not None:
                    raise frame_error from None
                raise
        if len(self._bare) > 1:
            raise FrameError(
                Reason.UNKNOWN_NODE,
                f"cannot attribute a bare payload: {len(self._bare)} lpp/raw nodes are registered",
            )
        if frame_error is not None:
            raise frame_error
        raise FrameError(
            Reason.BAD_VERSION, f"header version {data[0] >> 6} is not 0 and no other format matches"
        )

    def _names_frame_node(self, data: bytes) -> bool:
        """True when the header's node id field names a registered ``frame`` node."""
        id_len = (data[0] & 0x03) + 1
        if len(data) < 1 + id_len:
            return False
        state = self._states.get(int.from_bytes(data[1 : 1 + id_len], "little"))
        return state is not None and state.node.format is NodeFormat.FRAME

    def _hinted(self, data: bytes, node_id: int) -> DecodedFrame:
        state = self._states.get(node_id)
        if state is None:
            raise FrameError(Reason.UNKNOWN_NODE, f"node {node_id}: not in the registry")
        fmt = state.node.format
        if fmt is NodeFormat.FRAME:
            frame = self._frame(data)[0]
            if frame.node_id != node_id:
                raise FrameError(Reason.UNKNOWN_NODE, f"frame names node {frame.node_id}, expected {node_id}")
            return frame
        if fmt is NodeFormat.RADIOHEAD:
            if len(data) >= radiohead.HEADER_LEN and data[1] != state.node.radiohead_address:
                raise FrameError(
                    Reason.UNKNOWN_NODE, f"RadioHead FROM {data[1]} is not node {node_id}'s address"
                )
            return self._radiohead(data, state)
        return self._bare_payload(data, state)

    # -- our frame -----------------------------------------------------------------------------------

    def _frame(self, data: bytes, enforce: bool = True) -> tuple[DecodedFrame, str]:
        """Decode one of our frames; with ``enforce`` off the counter verdict is returned, not raised."""
        n = len(data)
        if n < 1:
            raise FrameError(Reason.TOO_SHORT, "empty packet")
        head = data[0]
        if head >> 6:
            raise FrameError(Reason.BAD_VERSION, f"frame format version {head >> 6} (this gateway reads 0)")
        ftype = (head >> 4) & 0x03
        if ftype == 3:
            raise FrameError(Reason.BAD_VERSION, "frame type 3 is reserved for an extension")
        id_len = (head & 0x03) + 1
        secured = head & 0x08
        body_end = n - (4 if secured else 2)
        codec_at = 3 + id_len
        if body_end < codec_at + 1:
            raise FrameError(
                Reason.TOO_SHORT, f"{n} bytes: shorter than a frame with a {id_len}-byte node id"
            )
        if n > MAX_FRAME_LEN:
            raise FrameError(Reason.BAD_PAYLOAD, f"{n} bytes: longer than a LoRa packet")
        node_id = int.from_bytes(data[1 : 1 + id_len], "little")
        state = self._states.get(node_id)
        version: int | None = None
        if not secured:
            bounds = self._bounds(node_id, data[codec_at])
            trailer = data[body_end] | (data[body_end + 1] << 8)
            if bounds is _UNBOUND:
                if crc16(data[:body_end]) != trailer:
                    raise FrameError(Reason.BAD_CRC, f"node {node_id}: CRC mismatch")
            else:
                body = data[:body_end]
                version = next((v for v, fp in bounds if crc16_bound(fp, body) == trailer), None)
                if version is None:
                    raise self._mismatch(node_id, data[codec_at], bounds, "CRC")
            if state is None:
                if enforce:
                    raise FrameError(Reason.UNKNOWN_NODE, f"node {node_id}: not in the registry")
                state = _State(Node(node_id, f"unregistered-{node_id}"), self.settings.direction)
            if state.node.format is not NodeFormat.FRAME:
                raise FrameError(
                    Reason.UNKNOWN_NODE, f"node {node_id}: registered as {state.node.format.value}"
                )
            if state.crypto is not None:
                raise FrameError(Reason.BAD_MIC, f"node {node_id}: secured node sent an open frame")
        else:
            if state is None:
                raise FrameError(Reason.UNKNOWN_NODE, f"node {node_id}: not in the registry")
            if state.node.format is not NodeFormat.FRAME:
                raise FrameError(
                    Reason.UNKNOWN_NODE, f"node {node_id}: registered as {state.node.format.value}"
                )
            if state.crypto is None:
                raise FrameError(Reason.BAD_MIC, f"node {node_id}: encrypted frame but the node has no key")
            bounds = self._bounds(node_id, data[codec_at])

        # Counter reconstruction, then the MIC before any verdict (docs/frame-format.md, rule 4).
        verdict, full = reconstruct(state.next, data[1 + id_len] | (data[2 + id_len] << 8), self._max_gap)
        if secured:
            verdict, full, version = self._authenticate(state, data, body_end, verdict, full, bounds)
        elif verdict == AHEAD:  # open frames cannot tell an old frame from a jump ahead
            verdict = COUNTER_GAP
            if full - WRAP >= 0:
                verdict, full = REPLAY, full - WRAP
        if full > MAX_FCNT:  # authentic (or open), but past the last counter a key may use
            raise FrameError(Reason.REPLAY, f"node {node_id}: counter exhausted (re-key the node)")
        if enforce and verdict != NEW:
            nxt = state.next
            if verdict == DUPLICATE:
                raise FrameError(Reason.DUPLICATE, f"node {node_id}: retransmission of frame {full}")
            if verdict == REPLAY:
                raise FrameError(Reason.REPLAY, f"node {node_id}: counter {full} is older than {nxt}")
            raise FrameError(
                Reason.COUNTER_GAP,
                f"node {node_id}: counter {full} is {full - nxt} ahead of {nxt} (max gap {self._max_gap})",
            )

        try:
            codec, model_id, _ = parse_codec_byte(data[codec_at])
        except FrameError as exc:
            raise FrameError(Reason.UNKNOWN_CODEC, f"node {node_id}: {exc.message}") from None
        payload = data[codec_at + 1 : body_end]
        encrypted = bool(head & 0x08)
        if encrypted and payload:
            payload = state.crypto.crypt(full, payload)  # type: ignore[union-attr]
        if codec is PayloadCodec.LPP:
            try:
                values: list[Reading] | None = lpp.decode(payload)
            except FrameError as exc:
                raise FrameError(Reason.BAD_PAYLOAD, f"node {node_id}: {exc.message}") from None
        elif codec is PayloadCodec.RAW:
            values = _raw_values(payload)
        elif codec is PayloadCodec.INFO:
            nodeinfo.parse(payload, node_id)  # bad_payload before anything acts on it
            values = None
        else:
            values = None
        frame = DecodedFrame(
            node_id,
            state.node.name,
            full,
            full + 1,
            _FRAME_TYPES[ftype],
            bool(head & 0x04),
            encrypted,
            codec,
            model_id,
            version,
            payload,
            values,
            NodeFormat.FRAME,
            None,
            state.epoch,
        )
        return frame, verdict

    def _bounds(self, node_id: int, codec: int) -> Sequence[tuple[int | None, bytes]]:
        """What the frame's check covers besides its bytes: nothing for raw/LPP (``_UNBOUND``); for a
        learned-model frame each installed candidate's fingerprint, newest version first."""
        if not codec & CODEC_MODEL_FLAG:
            return _UNBOUND
        model_id, mod8 = (codec >> 3) & 0x0F, codec & 0x07
        found = list(self._models(model_id, mod8)) if self._models is not None else []
        if not found:
            raise FrameError(
                Reason.UNKNOWN_MODEL,
                f"node {node_id}: no installed model {model_id} with version {mod8} mod 8"
                " (lora-gw model install FILE)",
            )
        return found

    @staticmethod
    def _mismatch(
        node_id: int, codec: int, bounds: Sequence[tuple[int | None, bytes]], check: str
    ) -> FrameError:
        tried = ", ".join(f"v{v}" for v, _ in bounds)
        return FrameError(
            Reason.MODEL_MISMATCH,
            f"node {node_id}: {check} fails under every installed version of model {(codec >> 3) & 0x0F}"
            f" ({tried}): another model, or a corrupted frame",
        )

    @staticmethod
    def _verify(
        crypto: NodeCrypto, fcnt: int, msg: bytes, mic: bytes, bounds: Sequence[tuple[int | None, bytes]]
    ) -> tuple[bool, int | None]:
        for version, fp in bounds:
            if crypto.verify(fcnt, msg, mic, fp):
                return True, version
        return False, None

    def _authenticate(
        self,
        state: _State,
        data: bytes,
        body_end: int,
        verdict: str,
        full: int,
        bounds: Sequence[tuple[int | None, bytes]] = _UNBOUND,
    ) -> tuple[str, int, int | None]:
        """(verdict, full counter, model version) of a secured frame whose MIC verifies, else
        ``bad_mic`` (``model_mismatch`` for a learned-model frame that fails under every candidate).

        A counter past 2^32 − 1 is judged with the 32 bits that B0 holds: a node that wrapped (or an old
        frame) verifies and is then refused as exhausted, a forgery is ``bad_mic`` like any other."""
        crypto: NodeCrypto = state.crypto  # type: ignore[assignment]
        msg, mic = data[:body_end], data[body_end:]
        if verdict == AHEAD:
            older = full - WRAP
            if older >= 0:
                ok, version = self._verify(crypto, older & MAX_FCNT, msg, mic, bounds)
                if ok:
                    return REPLAY, older, version
            ok, version = self._verify(crypto, full & MAX_FCNT, msg, mic, bounds)
            if ok:
                return COUNTER_GAP, full, version
        else:
            ok, version = self._verify(crypto, full & MAX_FCNT, msg, mic, bounds)
            if ok:
                return verdict, full, version
        node = state.node
        upcoming = state.next_crypto
        if upcoming is not None and self._verify(upcoming, _rx16(data), msg, mic, bounds)[0]:
            raise _NextEpoch(
                f"node {node.node_id}: frame of key epoch {node.key_epoch + 1}, but the registry is at"
                f" {node.key_epoch} (lora-gw nodes reset-counter {node.node_id} --new-epoch)"
            )
        if bounds is not _UNBOUND:
            raise self._mismatch(node.node_id, data[4 + (data[0] & 0x03)], bounds, "MIC")  # the codec byte
        raise FrameError(Reason.BAD_MIC, f"node {node.node_id}: MIC mismatch")

    # -- foreign formats -----------------------------------------------------------------------------

    def _radiohead(self, data: bytes, state: _State) -> DecodedFrame:
        hdr, body = radiohead.parse(data)
        node_id = state.node.node_id
        own = self.settings.radiohead_address
        if own is not None and hdr.to not in (own, radiohead.BROADCAST):
            raise FrameError(Reason.NOT_FOR_US, f"node {node_id}: RadioHead packet to {hdr.to}, not {own}")
        if hdr.retry and state.last_rh_id == hdr.id:
            raise FrameError(Reason.DUPLICATE, f"node {node_id}: RadioHead retry of packet id {hdr.id}")
        if hdr.ack:
            return self._foreign(state, FrameType.ACK, PayloadCodec.RADIOHEAD, body, [], hdr)
        return self._foreign(
            state, FrameType.TELEMETRY, PayloadCodec.RADIOHEAD, body, self._values(state, body), hdr
        )

    def _bare_payload(self, data: bytes, state: _State) -> DecodedFrame:
        if not data:
            raise FrameError(Reason.TOO_SHORT, f"node {state.node.node_id}: empty packet")
        if len(data) > MAX_FRAME_LEN:
            raise FrameError(Reason.BAD_PAYLOAD, f"{len(data)} bytes: longer than a LoRa packet")
        codec = state.node.payload_codec or PayloadCodec.RAW
        return self._foreign(state, FrameType.TELEMETRY, codec, data, self._values(state, data), None)

    @staticmethod
    def _values(state: _State, body: bytes) -> list[Reading]:
        if state.node.payload_codec is PayloadCodec.RAW:
            return _raw_values(body)
        try:
            return lpp.decode(body)
        except FrameError as exc:
            raise FrameError(Reason.BAD_PAYLOAD, f"node {state.node.node_id}: {exc.message}") from None

    @staticmethod
    def _foreign(
        state: _State,
        frame_type: FrameType,
        codec: PayloadCodec,
        payload: bytes,
        values: list[Reading],
        hdr: RadioHeadHeader | None,
    ) -> DecodedFrame:
        """Formats without a counter get the gateway's receive sequence as ``fcnt``."""
        node = state.node
        return DecodedFrame(
            node.node_id,
            node.name,
            state.next,
            state.next + 1,
            frame_type,
            False,
            False,
            codec,
            None,
            None,
            payload,
            values,
            node.format,
            hdr,
            state.epoch,
        )
