"""A frame whose samples all sit at the model's base: the service must publish every one of its samples
(issue 11: such frames, then empty payloads, vanished in ``model decode``). Since bitstream 2 such a
payload keeps the bytes its symbols emitted (the decoder refuses a payload shorter than it needs).

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
    """Stands in for a node's sensors: frame 0 has every sample at the model's base,
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
            fingerprint=self.model.fingerprint,
        )


def test_all_base_frame_is_published_with_every_sample(tmp_path, broker):
    state = tmp_path
    db = state / "gateway.db"
    model = install_demo_model(state)
    assert model is not None and ModelStore(state).active(model.model_id) is not None
    # no node-info report: counters 0, 1, 2 are the three frames below
    net = SimNetwork(nodes=1, interval_s=1.0, seed=3, speed=4.0, model=model, report_info=False)
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
    assert set(sensors.payloads[0]) == {0} and sensors.payloads[1] != sensors.payloads[0]  # as sent
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


def test_empty_payload_is_refused_not_read_as_base():
    """An empty payload no longer decodes to a frame of base values: the decoder needs bytes it lacks."""
    import pytest

    from gateway.codec.errors import PayloadError

    model = demo_model()
    full = model.encode(np.tile(model.params.base, (model.samples_per_frame, 1)))
    assert len(full) > 0 and (model.decode(full) == model.params.base).all()
    with pytest.raises(PayloadError):
        model.decode(b"")
