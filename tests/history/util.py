"""Telemetry streamed through the real frame layer and outbox (emulated reception, virtual clocks)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np

from gateway.codec import DEMO_MODEL, Model, ModelStore
from gateway.frames import FrameDecoder, FrameEncoder, Node, NodeRegistry
from gateway.pipeline.models import InstalledModels
from gateway.pipeline.pipeline import Pipeline
from gateway.radio.packet import CrcState, RxPacket
from gateway.sinks.history import HistorySettings
from gateway.sinks.outbox import Outbox

DATA = Path(__file__).resolve().parents[1] / "codec" / "data"
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
HOUR_MS = 3_600_000


def install_demo(state: Path) -> Model:
    src = state / DEMO_MODEL
    src.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
    model = ModelStore(state).install(src)
    src.unlink()
    return model


def packet(data: bytes, utc_ms: int) -> RxPacket:
    return RxPacket(
        payload=data,
        rssi_dbm=-90.0,
        snr_db=7.5,
        freq_hz=868_100_000,
        freq_error_hz=0.0,
        sf=7,
        bw_hz=125_000,
        cr="4/5",
        crc=CrcState.OK,
        monotonic_s=time.monotonic(),
        utc=datetime.fromtimestamp(utc_ms / 1000, tz=UTC),
    )


class Site:
    """Nodes, the registry, the frame decoder (with the installed models) and the outbox of one gateway."""

    def __init__(
        self, state: Path, node_ids: list[int], history: HistorySettings | None = None, wall_ms=None
    ) -> None:
        self.state = state
        self.db = state / "gateway.db"
        self.now_ms = T0_MS
        self.outbox = Outbox(  # virtual clocks: the receive time of the frame being streamed
            self.db,
            history=history or HistorySettings(),
            clock=lambda: self.now_ms / 1000,
            wall_ms=wall_ms or (lambda: self.now_ms),
        )
        self.registry = NodeRegistry(self.db)
        for nid in node_ids:
            if self.registry.get(nid) is None:
                self.registry.add(Node(node_id=nid, name=f"n{nid:x}"))
        self.models = InstalledModels(state, ttl_s=0.0)
        self.pipeline = Pipeline(FrameDecoder(self.registry, models=self.models.candidates))
        self.encoders = {nid: FrameEncoder(nid) for nid in node_ids}

    def stream(
        self,
        node_id: int,
        model: Model,
        q: np.ndarray,
        start_ms: int,
        interval_ms: int = HOUR_MS,
        deliver: bool = False,
    ) -> int:
        """Send ``q`` (samples × channels) as frames of the model's size, one sample per interval;
        returns the frames accepted. Commits like the service (group commit every 64 frames and at the
        end); ``deliver``: every committed frame is acknowledged as a broker's PUBACK would, and the
        acknowledgements ride with the next commit (the last ones with a commit of their own)."""
        n = model.samples_per_frame
        accepted = 0
        for i in range(0, len(q) - n + 1, n):
            t = start_ms + (i + n - 1) * interval_ms
            self.now_ms = t
            frame = self.encoders[node_id].encode_model(model, q[i : i + n])
            result = self.pipeline.process(packet(frame, t))
            if result is not None:
                self.outbox.add(result[0])
                self.pipeline.accept(result[1])
                accepted += 1
            if self.outbox.pending >= 64:
                self._commit(deliver)
        self._commit(deliver)
        if deliver:
            self.outbox.commit()
        return accepted

    def _commit(self, deliver: bool) -> None:
        for stored in self.outbox.commit():
            if deliver:
                self.outbox.acknowledge(stored.row_id)

    def close(self) -> None:
        self.outbox.close()
        self.registry.close()
