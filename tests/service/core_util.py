"""Wiring a real Core (real registry, decoder, SQLite outbox, MQTT sink) for tests, minus the radio."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.frames import FrameDecoder, FrameEncoder, Node, NodeRegistry
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.render import NodeCache, Renderer
from gateway.radio.packet import CrcState, RxPacket
from gateway.service.app import codec_stats, model_resolver
from gateway.service.core import Core, CoreSettings
from gateway.sinks.mqtt import MqttSettings, MqttSink
from gateway.sinks.outbox import Outbox, OutboxSettings
from gateway.sinks.url import parse_broker_url

GW = "gw"


def packet(data: bytes, crc: CrcState = CrcState.OK) -> RxPacket:
    return RxPacket(
        payload=data,
        rssi_dbm=-90.0,
        snr_db=7.5,
        freq_hz=868_100_000,
        freq_error_hz=120.0,
        sf=7,
        bw_hz=125_000,
        cr="4/5",
        crc=crc,
        monotonic_s=time.monotonic(),
        utc=datetime.now(UTC),
    )


def register(db: Path, nodes: dict[int, str], keys: dict[int, bytes] | None = None) -> None:
    reg = NodeRegistry(db)
    for nid, name in nodes.items():
        if reg.get(nid) is None:
            reg.add(Node(node_id=nid, name=name, key=(keys or {}).get(nid)))
    reg.close()


class Running:
    """A Core running in its own thread against a broker."""

    def __init__(self, db: Path, port: int, outbox: OutboxSettings | None = None, **core_kw) -> None:
        self.db, self.port, self.outbox_settings, self.core_kw = db, port, outbox, core_kw
        self.models_dir = core_kw.pop("models_dir", None)
        self.gap_filling = core_kw.pop("gap_filling", None)
        self.stop_event = threading.Event()
        self._built = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        if not self._built.wait(10):
            raise RuntimeError("core did not start")

    def _main(self) -> None:
        # SQLite connections belong to the thread that made them: build everything in the core thread.
        self.outbox = Outbox(self.db, self.outbox_settings or OutboxSettings())
        self.registry = NodeRegistry(self.db)
        models = model_resolver(self.models_dir, ttl_s=0.2) if self.models_dir else None
        self.decoder = FrameDecoder(self.registry, models=models.candidates if models else None)
        self.pipeline = Pipeline(self.decoder)
        self.sink = MqttSink(
            MqttSettings(
                broker=parse_broker_url(f"mqtt://127.0.0.1:{self.port}"),
                client_id=f"gw-{id(self)}",
                status_topic=f"lora/{GW}/status",
                reconnect_min_s=1,
                reconnect_max_s=1,
                ack_timeout_s=5,
            )
        )
        self.renderer = Renderer(
            GW,
            "lora",
            NodeCache(self.registry.get),
            models.model if models else None,
            codec_stats(),
            gap_filling=self.gap_filling,
        )
        kw = dict(self.core_kw)
        self.core = Core(
            self.pipeline,
            self.outbox,
            self.sink,
            self.renderer,
            kw.pop("settings", CoreSettings(health_interval_s=0.2)),
            **kw,
        )
        self.sink.start()
        self._built.set()
        try:
            self.core.run(self.stop_event)
        finally:
            self.registry.close()

    def submit(self, data: bytes, crc: CrcState = CrcState.OK) -> None:
        self.core.submit(packet(data, crc))

    def stop(self) -> None:
        self.stop_event.set()
        self.core.wake()
        self.thread.join(15)


def encoders(nodes: dict[int, str]) -> dict[int, FrameEncoder]:
    return {nid: FrameEncoder(nid) for nid in nodes}
