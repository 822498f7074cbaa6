from __future__ import annotations

import os
import random
import select
import sqlite3
import time

from gateway.frames import PayloadCodec, lpp
from gateway.pipeline.message import message_id
from gateway.radio.packet import CrcState
from gateway.service.core import CoreSettings, Waker

from .core_util import GW, Running, encoders, register
from .helpers import Collector

NODES = {0x2A: "weather", 0x1234: "soil"}


def lpp_frame(enc, temp: float, **kw) -> bytes:
    return enc.encode_lpp([(1, "temperature", temp), (2, "humidity", 50.5)], **kw)


def test_end_to_end_each_frame_published_once_with_metadata(tmp_path, broker):
    db = tmp_path / "gateway.db"
    register(db, NODES)
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    enc = encoders(NODES)
    sent = []
    for i in range(40):
        nid = list(NODES)[i % 2]
        data = lpp_frame(enc[nid], 20.0 + i / 10)
        gw.submit(data)
        gw.submit(data)  # a retransmission: must not be published again
        sent.append(message_id(nid, enc[nid].next_fcnt - 1))
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 40)
    gw.stop()
    msgs = sub.json_on("/telemetry")
    assert sorted(m["msg_id"] for m in msgs) == sorted(sent)  # all, and each exactly once
    assert gw.pipeline.drops["duplicate"] == 40
    m = next(m for m in msgs if m["node_id"] == 0x2A and m["fcnt"] == 0)
    assert m["node_name"] == "weather" and m["gateway_id"] == GW and m["received"].endswith("Z")
    assert m["values"][0] == {"channel": 1, "type": "temperature", "value": 20.0, "unit": "°C"}
    assert m["radio"] == {
        "rssi": -90.0,
        "snr": 7.5,
        "freq": 868100000,
        "sf": 7,
        "bw": 125000,
        "cr": "4/5",
        "freq_error": 120.0,
        "crc": "ok",
    }
    assert {t for t, _, _ in sub.messages if t.endswith("/telemetry")} == {
        f"lora/{GW}/nodes/weather/telemetry",
        f"lora/{GW}/nodes/soil/telemetry",
    }
    assert sub.payloads(f"lora/{GW}/status") == [b"online", b"offline"]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0  # all acknowledged, all deleted
        assert dict(c.execute("SELECT node_id, next_fcnt FROM nodes")) == {0x2A: 20, 0x1234: 20}
    sub.close()


def test_malformed_flood_is_counted_and_service_keeps_running(tmp_path, broker):
    db = tmp_path / "gateway.db"
    register(db, NODES)
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    enc = encoders(NODES)
    rng = random.Random(4)
    good = lpp_frame(enc[0x2A], 21.5)
    gw.submit(good)
    flood = 3000
    for i in range(flood):
        kind = i % 4
        if kind == 0:
            data = os.urandom(rng.randrange(0, 40))
        elif kind == 1:  # one flipped bit in a valid frame
            b = bytearray(good)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            data = bytes(b)
        elif kind == 2:
            data = good[: rng.randrange(0, len(good))]
        else:
            data = good
        gw.submit(data, CrcState.FAILED if i % 50 == 0 else CrcState.OK)
    gw.submit(lpp_frame(enc[0x2A], 22.5))
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 2)
    gw.stop()
    assert gw.pipeline.received == flood + 2
    assert sum(gw.pipeline.drops.values()) == flood
    assert gw.pipeline.drops["duplicate"] >= 700 and gw.pipeline.drops["radio_crc_failed"] == 60
    assert [m["values"][0]["value"] for m in sub.json_on("/telemetry")] == [21.5, 22.5]
    sub.close()


def test_backlog_from_previous_run_published_oldest_first(tmp_path, broker):
    db = tmp_path / "gateway.db"
    register(db, NODES)
    enc = encoders(NODES)
    # First run: no broker reachable (a closed port); frames are accepted into the outbox only.
    dead = Running(db, 1, settings=CoreSettings(shutdown_flush_s=0.1))
    for i in range(30):
        dead.submit(lpp_frame(enc[0x2A], float(i)))
    deadline = time.monotonic() + 10
    while dead.core.outbox.stats.stored < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    dead.stop()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 30
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 30)
    gw.stop()
    assert [m["fcnt"] for m in sub.json_on("/telemetry")] == list(range(30))
    sub.close()


def test_lpp_reading_types_roundtrip_through_publish(tmp_path, broker):
    db = tmp_path / "gateway.db"
    register(db, NODES)
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    enc = encoders(NODES)
    gps = {"latitude": 52.1, "longitude": 4.3, "altitude": 10.0}
    payload = lpp.encode([(3, "voltage", 3.3), (4, "gps", gps)])
    gw.submit(enc[0x1234].encode(payload, codec=PayloadCodec.LPP))
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) == 1)
    gw.stop()
    (m,) = sub.json_on("/telemetry")
    assert m["values"][0]["unit"] == "V" and m["values"][0]["value"] == 3.3
    assert m["values"][1]["value"]["latitude"] == 52.1
    sub.close()


def test_broker_outage_and_restart_loses_nothing_accepted(tmp_path, broker_factory):
    broker = broker_factory(persistence=True)
    db = tmp_path / "gateway.db"
    register(db, NODES)
    sub = Collector(broker.port, "lora/+/nodes/#", persistent_id="outage-consumer")
    gw = Running(db, broker.port)
    enc = encoders(NODES)
    sent = []

    def send(n: int) -> None:
        for _ in range(n):
            nid = list(NODES)[len(sent) % 2]
            gw.submit(lpp_frame(enc[nid], 20.0))
            sent.append(message_id(nid, enc[nid].next_fcnt - 1))

    send(20)
    assert sub.wait_for(lambda: len(sub.msg_ids()) >= 20)
    broker.stop()
    send(100)  # accepted while the broker is down
    assert sub.wait_for(lambda: gw.core.outbox.backlog >= 100, 10), gw.core.outbox.backlog  # stored, waiting
    broker.start()
    send(20)
    assert sub.wait_for(lambda: set(sub.msg_ids()) >= set(sent), 20), len(set(sent) - set(sub.msg_ids()))
    gw.stop()
    assert gw.core.outbox.stats.stored == gw.pipeline.passed == len(sent) == 140
    assert gw.sink.stats.disconnects >= 1
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    sub.close()


def test_acl_refused_publish_is_not_delivered_and_stays_in_outbox(tmp_path, broker_factory):
    broker = broker_factory(
        acl="topic write lora/gw/status\ntopic write lora/gw/stats\n"
        "topic write lora/gw/nodes/weather/#\ntopic read #\n"
    )
    db = tmp_path / "gateway.db"
    register(db, NODES)
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    enc = encoders(NODES)
    gw.submit(lpp_frame(enc[0x2A], 1.0))  # weather: allowed
    gw.submit(lpp_frame(enc[0x1234], 2.0))  # soil: refused by the ACL (v5 PUBACK 0x87)
    deadline = time.monotonic() + 10
    while gw.core.refused < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    gw.stop()
    assert gw.core.refused == 1 and gw.core.published == 1
    # delivered: the weather frame and the final stats at the stop; refused: the soil frame
    assert gw.sink.stats.delivered == 2 and gw.sink.stats.refused == 1
    assert [m["node_name"] for m in sub.json_on("/telemetry")] == ["weather"]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT node_id, fcnt FROM outbox").fetchall() == [(0x1234, 0)]  # kept for a retry
    sub.close()


def test_model_frame_refused_until_its_model_is_installed_then_decoded(tmp_path, broker):
    """Issue 11: a learned-model frame's CRC/MIC covers its model's fingerprint, so without the model
    it cannot be verified (``unknown_model``), under another model it fails (``model_mismatch``);
    neither moves a counter, and once the model is installed the node's frames decode."""
    import numpy as np

    from gateway.codec import DEMO_MODEL, ModelStore, demo_model

    db = tmp_path / "gateway.db"
    register(db, NODES)
    model = demo_model()
    sub = Collector(broker.port)
    gw = Running(
        db,
        broker.port,
        models_dir=tmp_path,
        settings=CoreSettings(health_interval_s=0.2, redecode_interval_s=0.3),
    )
    enc = encoders(NODES)
    samples = model.generate(model.samples_per_frame, np.random.default_rng(3))
    gw.submit(enc[0x2A].encode_model(model, samples, fcnt=0))
    assert sub.wait_for(lambda: gw.pipeline.drops["unknown_model"] == 1)
    from importlib import resources

    src = tmp_path / DEMO_MODEL
    src.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
    ModelStore(tmp_path).install(src)
    time.sleep(0.3)  # the candidate cache's ttl
    wrong = enc[0x2A].encode(
        model.encode(samples), codec=PayloadCodec.MODEL, model_id=model.model_id,
        model_version=model.version + 8, fingerprint=bytes(8), fcnt=0,
    )  # fmt: skip
    gw.submit(wrong)
    assert sub.wait_for(lambda: gw.pipeline.drops["model_mismatch"] == 1)
    gw.submit(enc[0x2A].encode_model(model, samples, fcnt=0))  # counter 0: nothing moved it
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) == 1)
    gw.stop()
    (tel,) = sub.json_on("/telemetry")
    assert tel["msg_id"] == message_id(0x2A, 0) and tel["model_version"] == model.version
    expected = model.values(samples)
    names = [c.name for c in model.schema.channels]
    assert [s[names[0]] for s in tel["samples"]] == [float(v) for v in expected[:, 0]]
    assert tel["values"][0]["name"] == names[0] and tel["values"][0]["value"] == float(expected[-1, 0])
    assert sub.json_on("/raw") == []
    live = gw.core.stats()["models"][model.key]  # the model's live figures, as in the stats topic
    assert live["frames"] == 1
    assert live["bytes_per_sample"] == round(len(model.encode(samples)) / len(samples), 4)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    sub.close()


def _install_demo(state) -> object:
    from importlib import resources

    from gateway.codec import DEMO_MODEL, ModelStore, demo_model

    src = state / DEMO_MODEL
    src.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
    ModelStore(state).install(src)
    return demo_model()


def test_gap_filling_publishes_flagged_estimates_only_when_enabled(tmp_path, broker):
    import numpy as np

    db = tmp_path / "gateway.db"
    register(db, NODES)
    model = _install_demo(tmp_path)
    sub = Collector(broker.port)
    gw = Running(db, broker.port, models_dir=tmp_path, gap_filling=lambda nid: nid == 0x2A)
    enc = encoders(NODES)
    rng = np.random.default_rng(5)
    series = model.generate(model.samples_per_frame * 4, rng)
    spf = model.samples_per_frame
    for nid in NODES:
        for k in range(4):
            frame = enc[nid].encode_model(model, series[k * spf : (k + 1) * spf])
            if k in (0, 3):  # frames 1 and 2 are "lost on the air"
                gw.submit(frame)
    assert sub.wait_for(lambda: len(sub.json_on("/telemetry")) >= 6)
    time.sleep(0.3)
    gw.stop()
    msgs = sub.json_on("/telemetry")
    est = [m for m in msgs if m.get("estimated")]
    assert [m["msg_id"] for m in est] == [
        message_id(0x2A, 1) + "-estimated",
        message_id(0x2A, 2) + "-estimated",
    ]
    assert all(len(m["samples"]) == spf for m in est)
    order = [m["msg_id"] for m in msgs if m["node_id"] == 0x2A]
    assert order[-1] == message_id(0x2A, 3)  # the real frame last: a state-keeping consumer shows it
    real = [m for m in msgs if not m.get("estimated")]
    assert sorted(m["msg_id"] for m in real) == sorted(message_id(n, f) for n in NODES for f in (0, 3))
    assert gw.core.stats()["estimated"] == 2
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0  # estimates never stored
    sub.close()


def test_waker_one_byte_per_wait_and_no_stale_wakeups():
    w = Waker()

    def readable() -> bool:
        return bool(select.select([w], [], [], 0)[0])

    assert not readable()
    w.wake()
    w.wake()  # many submits between two waits: one byte
    assert readable()
    w.clear()
    assert not readable()
    w.wake()  # a submit after clear must wake the next wait
    assert readable()
    w.clear()
    w._w.send(b"\0")  # a wake that raced with clear (flag already reset, byte written late) ...
    w.clear()  # ... is drained by the next clear, so select() does not spin
    assert not readable()
    w.close()


def test_paho_failure_in_the_core_thread_rebuilds_client_and_loses_nothing(tmp_path, broker):
    db = tmp_path / "gateway.db"
    register(db, NODES)
    sub = Collector(broker.port)
    gw = Running(db, broker.port)
    enc = encoders(NODES)
    deadline = time.monotonic() + 10
    while not gw.sink.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    client = gw.sink._client
    sent = []
    # one frame delivered first: the "online" status's PUBACK (read before it) cannot be the one that
    # crashes paho below, which would leave no frame in flight to retry
    gw.submit(lpp_frame(enc[0x2A], 19.0))
    sent.append(message_id(0x2A, enc[0x2A].next_fcnt - 1))
    while gw.core.published < 1 and time.monotonic() < deadline:
        time.sleep(0.01)

    def crash(cmd):
        raise RuntimeError("paho bug while handling " + cmd)

    client._handle_pubackcomp = crash  # the next PUBACK the core thread reads makes paho raise
    for i in range(20):
        nid = list(NODES)[i % 2]
        gw.submit(lpp_frame(enc[nid], 20.0 + i))
        sent.append(message_id(nid, enc[nid].next_fcnt - 1))
    assert sub.wait_for(lambda: set(sub.msg_ids()) >= set(sent)), sorted(set(sent) - set(sub.msg_ids()))
    deadline = time.monotonic() + 10
    while gw.core.published < 21 and time.monotonic() < deadline:
        time.sleep(0.02)
    gw.stop()
    assert gw.sink.stats.loop_restarts == 1 and gw.sink._client is not client
    assert gw.sink.stats.retried >= 1 and gw.core.published == 21
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0  # every frame acknowledged
    sub.close()
