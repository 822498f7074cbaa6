from __future__ import annotations

import os
import socket
import time
import uuid

from gateway.pipeline.message import StoredFrame
from gateway.pipeline.render import NodeCache, Renderer, utc_iso
from gateway.service.notify import Notifier

from .frames_util import accepted


def test_notifier_sends_datagrams_to_path_and_abstract_sockets(tmp_path):
    path = tmp_path / "n.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
    assert n.enabled and n.watchdog_interval_s == 2.0
    assert n.ready("up")
    assert s.recv(100) == b"READY=1\nSTATUS=up"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"lora-gw-test-{os.getpid()}-{uuid.uuid4().hex}"  # the abstract namespace is machine-wide
    abstract.bind(f"\0{name}")
    m = Notifier({"NOTIFY_SOCKET": f"@{name}"})
    assert m.watchdog() and abstract.recv(100) == b"WATCHDOG=1"
    assert not Notifier({}).ready("x")  # outside systemd: a no-op
    for sock in (s, abstract):
        sock.close()
    n.close()
    m.close()


class N:
    def __init__(self, node_id, name):
        self.node_id, self.name, self.payload_codec = node_id, name, None


def test_a_listener_that_stops_reading_never_blocks_the_notifier(tmp_path):
    path = tmp_path / "n.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))  # never read: its queue fills after a few hundred datagrams
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    sent = [n.status(f"rx {i}") for i in range(5000)]  # blocked forever here before
    assert sent[0] and not sent[-1]  # the overflow is dropped, not waited for
    t0 = time.monotonic()
    assert not n.stopping("bye")  # READY/STOPPING wait a moment for room, then give up
    assert 1.0 < time.monotonic() - t0 < 5.0
    assert s.recv(100) == b"STATUS=rx 0"
    s.recv(100)
    assert n.stopping("bye")  # room again: sent
    s.close()
    n.close()


def test_render_topics_ids_and_unknown_model_as_raw():
    r = Renderer("gw", "lora", NodeCache(lambda i: N(i, "weather.1") if i == 1 else None))
    t = r.render(StoredFrame(1, accepted(1, 7)))
    assert t.topic == "lora/gw/nodes/weather.1/telemetry" and t.kind == "telemetry"
    raw = r.render(StoredFrame(2, accepted(2, 9, codec="model", model=(3, 1))))  # node 2 is not registered
    assert raw.topic == "lora/gw/nodes/id-00000002/raw" and b'"msg_id":"00000002-9"' in raw.payload
    assert r.render(StoredFrame(2, accepted(2, 9, codec="model", model=(3, 1)), waiting_model=True)) is None
    assert utc_iso(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_watchdog_is_withheld_while_the_radio_thread_is_stuck(tmp_path):
    from gateway.frames import FrameDecoder
    from gateway.pipeline.pipeline import Pipeline
    from gateway.service.core import Core, CoreSettings
    from gateway.sinks.mqtt import MqttSettings, MqttSink
    from gateway.sinks.outbox import Outbox
    from gateway.sinks.url import parse_broker_url

    from .core_util import register

    db = tmp_path / "gateway.db"
    register(db, {1: "n"})
    path = tmp_path / "wd.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.05)
    now = [100.0]
    beat = [100.0]
    sink = MqttSink(
        MqttSettings(parse_broker_url("mqtt://127.0.0.1:1"), "c", "lora/g/status")
    )  # never started
    core = Core(
        Pipeline(FrameDecoder([])),
        Outbox(db),
        sink,
        Renderer("g", "lora", lambda i: None),
        CoreSettings(radio_stall_s=30.0),
        notifier=Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}),
        clock=lambda: now[0],
        radio_heartbeat=lambda: beat[0],
    )

    def pings() -> int:
        n = 0
        while True:
            try:
                n += s.recv(64) == b"WATCHDOG=1"
            except TimeoutError:
                return n

    core.step()
    assert pings() == 1  # healthy: fed at once, then every WatchdogSec/2
    now[0] += 31.0  # the radio thread has not looped for 31 s (a hung SPI read)
    core.step()
    assert pings() == 0 and not core.radio_alive()
    beat[0] = now[0]
    now[0] += 1.0
    core.step()
    assert pings() == 1
    core.outbox.close()
    s.close()
