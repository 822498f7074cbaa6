"""Packet monitor: every received packet with its radio metadata and the frame layer's verdict.

The verdict comes from the service's own pipeline (CRC policy, then the frame decoder over the node
registry, read once and never written): ``accepted`` or the drop reason (``radio_crc_failed``,
``unknown_node``, ``duplicate``, ...). Loss per node comes from gaps in its frame counters, so it
counts frames lost anywhere between the node's radio and the decoder.

On the emulator the simulated nodes of ``[radio.emulator]`` transmit open frames with Cayenne LPP
readings every ``interval_s`` (±20 %, random phase) over links with ``path_loss_db`` and ``loss``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from gateway import paths
from gateway.diag.radio_rig import RadioRig
from gateway.errors import GatewayError
from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node, NodeRegistry
from gateway.frames.registry import shown
from gateway.pipeline.pipeline import Pipeline, PipelineSettings
from gateway.radio.packet import RxPacket
from gateway.service.config import Config
from gateway.service.radio import SIM_NODE_BASE, Telemetry

log = logging.getLogger(__name__)

ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class PacketRow:
    utc: datetime
    node_id: int | None
    node: str
    fcnt: int | None
    rssi_dbm: float
    snr_db: float
    freq_error_hz: float
    freq_hz: int
    sf: int
    bw_hz: int
    cr: str
    crc: str
    verdict: str
    payload: bytes

    def as_dict(self) -> dict:
        return {
            "type": "packet",
            "utc": self.utc.isoformat(timespec="milliseconds"),
            "node_id": self.node_id,
            "node": self.node,
            "fcnt": self.fcnt,
            "rssi_dbm": round(self.rssi_dbm, 1),
            "snr_db": self.snr_db,
            "freq_error_hz": round(self.freq_error_hz),
            "freq_mhz": self.freq_hz / 1e6,
            "sf": self.sf,
            "bw_khz": self.bw_hz / 1e3,
            "cr": self.cr,
            "crc": self.crc,
            "verdict": self.verdict,
            "size": len(self.payload),
        }


@dataclass
class NodeTally:
    """What one node's packets say about its link: counters seen, levels, settings, sizes."""

    node_id: int
    name: str
    fcnts: set[int] = field(default_factory=set)
    packets: int = 0
    rssi_dbm: list[float] = field(default_factory=list)
    snr_db: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    sf: int = 7
    bw_hz: int = 125_000
    cr: str = "4/5"

    @property
    def expected(self) -> int:
        return max(self.fcnts) - min(self.fcnts) + 1 if self.fcnts else 0

    @property
    def lost(self) -> int:
        """Frames missing between the first and the last counter heard."""
        return self.expected - len(self.fcnts)

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.expected if self.expected else 0.0

    def as_dict(self) -> dict:
        return {
            "node_id": self.node_id,
            "node": self.name,
            "received": len(self.fcnts),
            "lost": self.lost,
            "loss_ratio": round(self.loss_ratio, 4),
            "first_fcnt": min(self.fcnts) if self.fcnts else None,
            "last_fcnt": max(self.fcnts) if self.fcnts else None,
        }


class Monitor:
    """Classifies packets with the service's pipeline and keeps per-node tallies."""

    def __init__(self, nodes: list[Node], crc_policy: str = "drop_failed") -> None:
        self.names = {n.node_id: shown(n.name, 40) for n in nodes}  # legacy names may hold escapes
        self.pipeline = Pipeline(FrameDecoder(nodes), PipelineSettings(crc_policy=crc_policy))
        self.tallies: dict[int, NodeTally] = {}
        self.verdicts: Counter[str] = Counter()
        self.packets = 0

    def handle(self, packet: RxPacket) -> PacketRow:
        self.packets += 1
        before = Counter(self.pipeline.drops)
        result = self.pipeline.process(packet)
        if result is not None:
            _accepted, frame = result
            self.pipeline.accept(frame)
            verdict, node_id, fcnt = ACCEPTED, frame.node_id, frame.fcnt
        else:
            grew = [r for r, n in self.pipeline.drops.items() if n > before.get(r, 0)]
            verdict = grew[0] if grew else "dropped"
            node_id, fcnt = self._identify(packet)
        self.verdicts[verdict] += 1
        name = self.names.get(node_id, f"0x{node_id:x}") if node_id is not None else "?"
        if node_id is not None:  # accepted, or a frame whose own CRC/MIC verified: its link is real
            self._tally(node_id, name, fcnt, packet)
        return PacketRow(
            packet.utc,
            node_id,
            name,
            fcnt,
            packet.rssi_dbm,
            packet.snr_db,
            packet.freq_error_hz,
            packet.freq_hz,
            packet.sf,
            packet.bw_hz,
            packet.cr,
            packet.crc.value,
            verdict,
            packet.payload,
        )

    def _identify(self, packet: RxPacket) -> tuple[int | None, int | None]:
        """Node and counter of a rejected packet when its frame CRC still verifies (display only)."""
        try:
            frame, _ = self.pipeline.decoder.inspect(packet.payload)
        except (FrameError, ValueError, IndexError):
            return None, None
        return frame.node_id, frame.fcnt

    def _tally(self, node_id: int, name: str, fcnt: int | None, packet: RxPacket) -> None:
        t = self.tallies.setdefault(node_id, NodeTally(node_id, name))
        t.packets += 1
        if fcnt is not None:
            t.fcnts.add(fcnt)
        t.rssi_dbm.append(packet.rssi_dbm)
        t.snr_db.append(packet.snr_db)
        t.sizes.append(len(packet.payload))
        t.sf, t.bw_hz, t.cr = packet.sf, packet.bw_hz, packet.cr

    def summary(self, seconds: float) -> dict:
        return {
            "type": "summary",
            "seconds": seconds,
            "packets": self.packets,
            "verdicts": dict(self.verdicts),
            "nodes": [t.as_dict() for t in sorted(self.tallies.values(), key=lambda t: t.node_id)],
        }


def sim_nodes(cfg: Config) -> list[Node]:
    e = cfg.radio.emulator
    return [
        Node(node_id=SIM_NODE_BASE + i + 1, name=f"sim-{i + 1}", interval_s=e.interval_s)
        for i in range(e.nodes)
    ]


def registry_nodes(cfg: Config, state_dir: str | None = None) -> list[Node]:
    """The registered nodes, if the gateway has a registry; the database is only read."""
    try:
        db = paths.state_dir(state_dir or cfg.gateway.state_dir, create=False) / paths.DB_NAME
    except OSError:
        return []
    if not db.is_file():
        log.info("no node registry at %s: every packet will be unknown_node", db)
        return []
    try:
        with contextlib.closing(NodeRegistry(db)) as reg:
            return reg.nodes()
    except (GatewayError, OSError) as exc:
        log.warning("node registry %s unreadable (%s): decoding without it", db, exc)
        return []


def schedule_sim_traffic(rig: RadioRig, cfg: Config, seconds: float) -> int:
    """Queue every simulated node's frames for the next ``seconds`` of virtual time; returns the count."""
    sim = rig.sim
    if sim is None or not sim.nodes:
        return 0
    e = cfg.radio.emulator
    rng = np.random.default_rng(e.seed)
    now = sim.clock.monotonic()
    end = now + seconds
    queued = 0
    for i, node in enumerate(sim.nodes):
        enc = FrameEncoder(SIM_NODE_BASE + i + 1)
        telemetry = Telemetry(np.random.default_rng(e.seed * 1000 + i), None)
        t = now + float(rng.uniform(0, e.interval_s))
        while t < end:
            sim.send_at(t, node, telemetry.frame(enc))
            queued += 1
            t += e.interval_s * float(rng.uniform(0.8, 1.2))
    return queued


def receive_for(rig: RadioRig, seconds: float, on_packet: Callable[[RxPacket], None]) -> None:
    """Hand every packet the gateway's radio receives within ``seconds`` to ``on_packet``."""
    drv = rig.driver(receive=True)
    deadline = rig.clock.monotonic() + seconds
    while (remaining := deadline - rig.clock.monotonic()) > 0:
        packet = drv.receive(min(remaining, 1.0))
        if packet is not None:
            on_packet(packet)
