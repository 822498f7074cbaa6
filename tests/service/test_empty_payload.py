"""A frame whose samples all sit at the model's base codes to an empty payload; the service must still
publish every one of its samples (issue 11: such frames vanished in ``model decode``).

Drives the whole receive path: a simulated node's SX1276 driver on the emulated air, the gateway's
driver, frame decoding, the SQLite outbox, rendering with the installed model, a real Mosquitto."""

from __future__ import annotations

import sqlite3

import numpy as np

from gateway.codec import ModelStore, demo_model
from gateway.frames import FrameEncoder, NodeRegistry
from gateway.frames.types import PayloadCodec
from gateway.pipeline.message import message_id
from gateway.service.radio import SimNetwork, install_demo_model

from .core_util import Running
from .helpers import Collector


class BaseFrames:
    """Stands in for a node's sensors: frame 0 has every sample at the model's base (empty payload),
    frame 1 is a short all-base tail, frame 2 a measured frame, then all-base again."""

    def __init__(self, model) -> None:
        self.model = model
        spf = model.samples_per_frame
        base = np.tile(model.params.base, (spf, 1))
        moved = base.copy()
        moved[3:, 0] += 7  # temperature rises 0.7 °C part way through
        self.series = [base, base[:5], moved]
        self.payloads: list[bytes] = []

    def frame(self, enc: FrameEncoder) -> bytes:
        samples = self.series[min(len(self.payloads), len(self.series) - 1)]
        payload = self.model.encode(samples)
        self.payloads.append(payload)
        return enc.encode(
            payload,
            codec=PayloadCodec.MODEL,
            model_id=self.model.model_id,
            model_version=self.model.version % 8,
        )


def test_all_base_frame_is_published_with_every_sample(tmp_path, broker):
    state = tmp_path
    db = state / "gateway.db"
    model = install_demo_model(state)
    assert model is not None and ModelStore(state).active(model.model_id) is not None
    net = SimNetwork(nodes=1, interval_s=1.0, seed=3, speed=4.0, model=model)
    with NodeRegistry(db) as registry:
        net.register(registry)
    sensors = net.telemetry[0] = BaseFrames(model)
    sub = Collector(broker.port)
    gw = Running(db, broker.port, models_dir=state)
    try:
        net.start(gw.core.submit, seconds=3.6)  # virtual seconds: three or four frames
        assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 3, 20), sub.messages
    finally:
        net.stop()
        gw.stop()
        sub.close()
    assert sensors.payloads[0] == b"" and sensors.payloads[1] != b""  # what the node really sent
    msgs = {m["fcnt"]: m for m in sub.json_on("/telemetry")}
    node = net.node_ids[0]
    names = [c.name for c in model.schema.channels]
    base = dict(zip(names, (float(v) for v in model.values(model.params.base[None])[0]), strict=True))
    spf = model.samples_per_frame
    for fcnt, count in ((0, spf), (1, 5)):
        m = msgs[fcnt]
        assert m["msg_id"] == message_id(node, fcnt)
        assert [{k: v for k, v in s.items() if k != "time"} for s in m["samples"]] == [base] * count
        assert [v["value"] for v in m["values"]] == [base[n] for n in names]
    assert [s["temperature"] for s in msgs[2]["samples"]] == [base["temperature"]] * 3 + [
        round(base["temperature"] + 0.7, 1)
    ] * (spf - 3)
    assert sub.json_on("/raw") == []  # nothing fell back to raw
    live = gw.core.stats()["models"][model.key]
    assert live["frames"] >= 3
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0  # all delivered


def test_demo_model_all_base_payload_is_empty():
    model = demo_model()
    assert model.encode(np.tile(model.params.base, (model.samples_per_frame, 1))) == b""


def test_empty_payload_stored_before_its_model_decodes_whole_later(tmp_path, broker):
    """The frame waits in the outbox (an empty BLOB) until the model is installed, then goes out whole."""
    from importlib import resources

    from gateway.codec import DEMO_MODEL
    from gateway.service.core import CoreSettings

    from .core_util import encoders, register

    db = tmp_path / "gateway.db"
    register(db, {0x2A: "weather"})
    model = demo_model()
    sub = Collector(broker.port)
    gw = Running(
        db,
        broker.port,
        models_dir=tmp_path,
        settings=CoreSettings(health_interval_s=0.2, redecode_interval_s=0.3),
    )
    try:
        frame = encoders({0x2A: "weather"})[0x2A].encode(
            b"", codec=PayloadCodec.MODEL, model_id=model.model_id, model_version=model.version % 8
        )
        gw.submit(frame)
        assert sub.wait_for(lambda: len(sub.json_on("/raw")) == 1)
        assert sub.json_on("/raw")[0]["payload_hex"] == ""
        src = tmp_path / DEMO_MODEL
        src.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
        ModelStore(tmp_path).install(src)
        assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) == 1)
    finally:
        gw.stop()
        sub.close()
    (tel,) = sub.json_on("/telemetry")
    expected = model.values(np.tile(model.params.base, (model.samples_per_frame, 1)))
    assert [s["pressure"] for s in tel["samples"]] == [float(v) for v in expected[:, 2]]
    assert len(tel["samples"]) == model.samples_per_frame
