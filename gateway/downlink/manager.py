"""The core thread's downlink decisions: after an uplink is committed, what (if anything) goes back.

For each committed uplink: a queued command for the node (oldest first; expired ones reported and never
sent) and/or an acknowledgement when the frame asked for one. One downlink per window: the command rides
in the acknowledgement when there is one. The duty-cycle ledger is asked (and charged) first; the
downlink counter is committed next; then the request goes to the radio thread for the window at
RxDone + ``rx_delay_s``. Over budget: dropped, counted, logged, and a command stays queued for the next
window.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.downlink.commands import CommandRejected, DownlinkStore, Status, parse_command
from gateway.downlink.dutycycle import DutyCycleLedger
from gateway.downlink.nodeinfo import (
    Installed,
    NodeInfoStore,
    Reported,
    SwitchRefused,
    check_switch,
    parse_set_model,
)
from gateway.downlink.scheduler import TxQueue, TxRequest
from gateway.frames.downlink import DownlinkEncoder
from gateway.frames.errors import FrameError
from gateway.frames.types import FrameType, NodeFormat
from gateway.frames.wire import FLAG_ACK_REQUESTED, NODE_ID_LEN_MASK

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DownlinkSettings:
    enabled: bool = True
    rx_delay_s: float = 1.0
    frequency_hz: int | None = None  # None: the uplink's channel
    max_late_s: float = 0.002
    max_queue: int = 8
    max_sends: int = 3  # a confirmed command is sent again while unacknowledged, this many times in all


@dataclass(frozen=True, slots=True)
class Uplink:
    """What the core remembers of an uplink until its commit."""

    node_id: int
    fcnt: int
    ack_requested: bool
    rx_monotonic_s: float  # RxDone on the radio's clock
    freq_hz: int


def repeated_uplink(payload: bytes, rx_monotonic_s: float, freq_hz: int) -> Uplink | None:
    """A verified retransmission (``duplicate``) of a frame that asked for an acknowledgement: the node
    missed it, so it is acknowledged again (the frame itself is stored already). Node id and the
    counter's 16 on-air bits come from the header (an acknowledgement names only those 16 bits)."""
    if len(payload) < 5 or payload[0] >> 6 != 0 or not payload[0] & FLAG_ACK_REQUESTED:
        return None
    n = (payload[0] & NODE_ID_LEN_MASK) + 1
    if len(payload) < n + 3:
        return None
    node_id = int.from_bytes(payload[1 : 1 + n], "little")
    fcnt16 = int.from_bytes(payload[1 + n : 3 + n], "little")
    return Uplink(node_id, fcnt16, True, rx_monotonic_s, freq_hz)


class Downlinker:
    def __init__(
        self,
        node_get: Callable[[int], object],
        store: DownlinkStore,
        ledger: DutyCycleLedger,
        queue: TxQueue,
        airtime_s: Callable[[int], float],
        settings: DownlinkSettings,
        node_by_topic: Callable[[str], object] | None = None,
        topic_base: str = "lora/gateway/nodes",
        info: NodeInfoStore | None = None,
        installed: Installed | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``info``: the nodes' reports (a set-model command needs one listing its version, unless
        forced); ``installed``: the installed model versions' fingerprints (a set-model command for a
        version the gateway lacks is always refused)."""
        self._node_get = node_get
        self.store = store
        self.ledger = ledger
        self.queue = queue
        self._airtime = airtime_s
        self.settings = settings
        self._topic_base = topic_base
        self.statuses: deque[tuple[str, bytes]] = deque()  # (topic, payload) for the core to publish
        self._node_by_topic = node_by_topic
        self.acks_scheduled = 0
        self.ack_requests = 0  # committed uplinks that asked for an acknowledgement
        self.commands_scheduled = 0
        self.acks_sent = 0
        self.commands_rejected = 0
        self.info = info
        self._installed = installed
        self.tx_stats: Callable[[], dict] | None = None  # the radio thread's runner's figures (wiring)
        self.home_freq_hz: int | None = None  # the radio's channel, for the duty-cycle figure (wiring)
        # wakes the core when the radio thread hands back a result (wiring): a status is published
        # within one core iteration, not at the core's next timeout
        self.wake: Callable[[], None] | None = None
        self.switch_refused: Counter[str] = Counter()  # set-model commands refused, by reason
        self.reports = 0  # node-info reports stored
        self.reported: dict[int, Reported] = info.all() if info is not None else {}  # last per node
        self._clock = clock
        self._next_rescan = clock() + 1.0
        self._topic_of: dict[int, str] = {}
        self._pending: set[int] = store.nodes_with_queued()  # nodes with queued commands
        self._results: deque = deque()
        self._sends: dict[
            int, int
        ] = {}  # confirmed command row → times sent  # appended by the radio thread, drained by the core
        # confirmed command row → the downlink counters (low 16 bits) it went out with: a node may
        # acknowledge an earlier send after the gateway already queued the command again
        self._sent_as: dict[int, set[int]] = {}

    def _status(self, st: Status) -> None:
        log.info(
            "downlink: node %s command %s %s%s",
            st.node_topic,
            st.cmd_id,
            st.status,
            f" ({st.reason})" if st.reason else "",
        )
        self.statuses.append((f"{self._topic_base}/{st.node_topic}/command/status", st.payload()))

    # -- MQTT commands -------------------------------------------------------------------------------------
    def command(self, node_topic: str, raw: bytes) -> None:
        """A message on lora/<gw>/nodes/<node>/command: validated, stored, ``queued`` (or ``rejected``)."""
        cmd_id = None
        try:
            node = self._node_by_topic(node_topic) if self._node_by_topic else None
            req = parse_command(raw)
            cmd_id = req.cmd_id
            if node is None:
                raise CommandRejected("unknown node", cmd_id)
            self._check_model_switch(node, node_topic, req.payload, req.force, cmd_id)
            self.store.enqueue(node.node_id, req.payload, req.confirm, req.expires_s, cmd_id)  # type: ignore[attr-defined]
            self._topic_of[node.node_id] = node_topic  # type: ignore[attr-defined]
            self._pending.add(node.node_id)  # type: ignore[attr-defined]
        except CommandRejected as exc:
            self.commands_rejected += 1
            self._status(Status(None, node_topic, exc.cmd_id or cmd_id, "rejected", exc.reason))
            return
        self._status(Status(node.node_id, node_topic, cmd_id, "queued"))  # type: ignore[attr-defined]

    def _check_model_switch(
        self, node: object, node_topic: str, payload: bytes, force: bool, cmd_id: str | None
    ) -> None:
        """A set-model command goes only to a node that reported holding that version, for a version
        the gateway has installed (gateway.downlink.nodeinfo)."""
        target = parse_set_model(payload)
        if target is None:
            return
        node_id: int = node.node_id  # type: ignore[attr-defined]
        fp = self._installed(*target) if self._installed is not None else None
        reported = self.info.get(node_id) if self.info is not None else None
        try:
            warning = check_switch(node_topic, target[0], target[1], reported, fp, force)
        except SwitchRefused as exc:
            self.switch_refused[exc.reason] += 1
            log.warning("downlink: node %08x set-model %d@%d refused: %s", node_id, *target, exc.message)
            raise CommandRejected(f"model switch refused: {exc.message}", cmd_id) from None
        if warning is not None:
            log.warning("downlink: node %08x: %s", node_id, warning)

    def report(self, node_id: int, payload: bytes, fcnt: int, counter_epoch: int) -> None:
        """A verified node-info uplink: stored (it decides which set-model commands may go)."""
        if self.info is None:
            return
        try:
            stored = self.info.record(node_id, payload, fcnt, counter_epoch)
        except FrameError as exc:  # the decoder parsed it already; a store that reads it differently
            log.warning("node %08x: node info not stored: %s", node_id, exc.message)
            return
        if stored is None:
            log.info("node %08x: node info of counter %d is older than the stored one", node_id, fcnt)
            return
        self.reports += 1
        self.reported[node_id] = stored
        i = stored.info
        log.info(
            "node %08x reports firmware %s, models %s, active %s",
            node_id,
            i.firmware_version,
            stored.models_text,
            "none" if i.active is None else f"{i.active[0]}@{i.active[1]}",
        )

    def _topic(self, node_id: int, node: object) -> str:
        return self._topic_of.get(node_id) or getattr(node, "name", None) or f"{node_id}"

    # -- uplinks ---------------------------------------------------------------------------------------------
    def control(self, node_id: int, frame_type: int, payload: bytes) -> None:
        """A verified non-telemetry uplink: frame type 1 from a node acknowledges the confirmed downlink
        whose counter (low 16 bits, little-endian) it carries."""
        if frame_type != FrameType.ACK or len(payload) < 2:
            return
        acked = int.from_bytes(payload[:2], "little")
        # the radio thread hands back "sent" before it can hear the node's answer: taking those results
        # first keeps the statuses in the order they happened (sent, then acknowledged)
        self._drain_results()
        cmd = self.store.awaiting_ack(node_id)
        if cmd is None or cmd.dl_fcnt is None or (cmd.dl_fcnt & 0xFFFF) != acked:
            earlier = self.store.unacknowledged(node_id)  # sent before, queued or sending again now
            if earlier is not None and acked in self._sent_as.get(earlier.row_id, ()):
                cmd = earlier
        if (
            cmd is None
            or cmd.dl_fcnt is None
            or acked not in ({cmd.dl_fcnt & 0xFFFF} | self._sent_as.get(cmd.row_id, set()))
        ):
            log.info(
                "node %08x: acknowledgement of downlink %d matches no command awaiting one (%s)",
                node_id,
                acked,
                "none sent" if cmd is None else f"{cmd.cmd_id} was sent as downlink {cmd.dl_fcnt}",
            )
            return
        self.store.set_status(cmd.row_id, "acknowledged")
        self._sent_as.pop(cmd.row_id, None)
        self._sends.pop(cmd.row_id, None)
        topic = self._topic(node_id, self._node_get(node_id))
        self._status(Status(node_id, topic, cmd.cmd_id, "acknowledged"))

    def committed(self, up: Uplink) -> None:
        """Called once the uplink is durable in the outbox (an acknowledged frame is never lost)."""
        if not self.settings.enabled:
            return
        node = self._node_get(up.node_id)
        if node is None or getattr(node, "format", NodeFormat.FRAME) != NodeFormat.FRAME:
            return
        if up.ack_requested:
            self.ack_requests += 1
        topic = self._topic(up.node_id, node)
        self._retry_unacknowledged(up.node_id, topic)
        cmd, expired = self.store.next_for(up.node_id) if up.node_id in self._pending else (None, [])
        if cmd is None:
            self._pending.discard(up.node_id)
        for e in expired:
            self._status(Status(up.node_id, topic, e.cmd_id, "expired"))
        if cmd is None and not up.ack_requested:
            return
        key, epoch = getattr(node, "key", None), getattr(node, "key_epoch", 0)
        enc = DownlinkEncoder(up.node_id, key, epoch)
        freq = self.settings.frequency_hz or up.freq_hz
        # size first (the counter only changes the bytes, not the length)
        probe = (
            enc.ack(0, up.fcnt, cmd.payload if cmd else b"")
            if up.ack_requested
            else enc.command(0, cmd.payload)
        )
        kind = ("ack+command" if cmd else "ack") if up.ack_requested else "command"
        verdict = self.ledger.reserve(freq, self._airtime(len(probe)), kind, up.node_id)
        if not verdict.allowed:
            return
        fcnt = self.store.take_fcnt(up.node_id, epoch)
        confirm = bool(cmd and cmd.confirm)
        if up.ack_requested:
            frame = enc.ack(fcnt, up.fcnt, cmd.payload if cmd else b"", confirm)
        else:
            assert cmd is not None
            frame = enc.command(fcnt, cmd.payload, confirm)
        if cmd is not None:
            self.store.set_status(cmd.row_id, "sending", fcnt)
            if confirm:
                self._sent_as.setdefault(cmd.row_id, set()).add(fcnt & 0xFFFF)
        due = up.rx_monotonic_s + self.settings.rx_delay_s
        self.queue.put(
            TxRequest(
                due,
                frame,
                up.node_id,
                kind,
                on_result=self._on_result(up.node_id, topic, cmd, up.ack_requested),
                freq_hz=self.settings.frequency_hz,
            )
        )
        if up.ack_requested:
            self.acks_scheduled += 1
        if cmd is not None:
            self.commands_scheduled += 1

    def _retry_unacknowledged(self, node_id: int, topic: str) -> None:
        """A telemetry uplink after a confirmed command was sent: the node did not acknowledge it (its
        next uplink would have been the acknowledgement), so it goes again, up to ``max_sends`` times."""
        cmd = self.store.awaiting_ack(node_id)
        if cmd is None:
            return
        sends = self._sends.get(cmd.row_id, 1)
        if sends >= self.settings.max_sends:
            self._sends.pop(cmd.row_id, None)
            self.store.set_status(cmd.row_id, "expired")
            self._status(
                Status(node_id, topic, cmd.cmd_id, "expired", f"not acknowledged after {sends} sends")
            )
            return
        self._sends[cmd.row_id] = sends + 1
        self.store.set_status(cmd.row_id, "queued")
        self._pending.add(node_id)

    def _on_result(self, node_id: int, topic: str, cmd, is_ack: bool) -> Callable[[str], None]:
        # Runs in the radio thread: a hand-back to the core, never SQLite.
        def done(result: str) -> None:
            self._results.append((node_id, topic, cmd, is_ack, result))
            if self.wake is not None:
                self.wake()

        return done

    def poll_results(self) -> None:
        """Core thread: statuses of downlinks the radio thread finished; once a second, the commands an
        operator queued beside the service (``lora-gw nodes set-model``)."""
        now = self._clock()
        if now >= self._next_rescan:
            self._next_rescan = now + 1.0
            self._pending |= self.store.nodes_with_queued()
        self._drain_results()

    def _drain_results(self) -> None:
        while self._results:
            node_id, topic, cmd, is_ack, result = self._results.popleft()
            if result == "sent" and is_ack:
                self.acks_sent += 1
            if cmd is None:
                continue
            if self.store.status(cmd.row_id) == "acknowledged":
                continue  # an earlier send's acknowledgement arrived while this one was on the air
            if result == "sent":
                self.store.set_status(cmd.row_id, "sent")
                self._status(Status(node_id, topic, cmd.cmd_id, "sent"))
                if not cmd.confirm:
                    self.store.set_status(cmd.row_id, "done")
            else:  # missed or failed: stays queued for the next window
                self.store.set_status(cmd.row_id, "queued")
                self._pending.add(node_id)

    def stats(self) -> dict:
        return {
            "ack_requests": self.ack_requests,
            "acks_scheduled": self.acks_scheduled,
            "commands_scheduled": self.commands_scheduled,
            "commands_rejected": self.commands_rejected,
            "model_switch_refused": dict(self.switch_refused),
            "node_info_reports": self.reports,
            "acks_sent": self.acks_sent,
            "tx_dropped_duty_cycle": self.ledger.dropped,
            **(self.tx_stats() if self.tx_stats is not None else {}),
            **(
                {"duty_cycle_used_percent": round(self.ledger.used_percent(freq), 4)}
                if (freq := self.settings.frequency_hz or self.home_freq_hz)
                else {}
            ),
        }
