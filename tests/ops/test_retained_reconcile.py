"""Retained topics of renamed and removed nodes, against a real Mosquitto (a private one on a free port).

The core, its MQTT sink, the registry (SQLite) and Operations are the real ones; each test uses a gateway
id and a discovery prefix of its own, and reads what the broker retains with a fresh subscriber."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.frames import FrameDecoder, NodeRegistry
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.render import NodeCache, Renderer
from gateway.service.core import Core, CoreSettings
from gateway.service.operations import Operations, OperationsSettings
from gateway.sinks.mqtt import MqttSettings, MqttSink
from gateway.sinks.outbox import Outbox, OutboxSettings
from gateway.sinks.url import BrokerUrl
from tests.ops.nodes_util import telemetry_of_every_kind
from tests.service.conftest import Broker, free_port

PREFIX = "lora-test"


PORT = 0  # the module's private broker (the fixture below)


@pytest.fixture(scope="module", autouse=True)
def broker(tmp_path_factory) -> Iterator[Broker]:
    global PORT
    b = Broker(workdir=tmp_path_factory.mktemp("mosquitto"), port=free_port())
    b.start()
    PORT = b.port
    yield b
    b.stop()


class Gateway:
    """One run of the gateway's core with its observer, pumped from the test's thread (the core thread)."""

    def __init__(self, db: Path, gw_id: str, ha_prefix: str) -> None:
        self.outbox = Outbox(db, OutboxSettings())
        self.registry = NodeRegistry(db)
        self.sink = MqttSink(
            MqttSettings(
                broker=BrokerUrl("127.0.0.1", PORT, False),
                client_id=f"{gw_id}-{uuid.uuid4().hex[:6]}",
                status_topic=f"{PREFIX}/{gw_id}/status",
            )
        )
        settings = OperationsSettings(
            homeassistant=True, discovery_prefix=ha_prefix, registry_check_s=0.2, link_interval_s=0.1
        )
        self.ops = Operations(gw_id, f"{PREFIX}/{gw_id}", settings, self.registry.get, self.registry.nodes)
        self.core = Core(
            Pipeline(FrameDecoder(self.registry)),
            self.outbox,
            self.sink,
            Renderer(gw_id, PREFIX, NodeCache(self.registry.get)),
            CoreSettings(stats_interval_s=3600),
            observer=self.ops,
        )
        self.ops.attach(self.core)
        self.sink.start()
        assert self.pump(lambda: self.sink.connected), f"no connection to 127.0.0.1:{PORT}"

    def pump(self, until, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.core.step(0.02)
            if until():
                return True
        return False

    def settle(self, seconds: float = 1.1) -> None:
        """Run the core for ``seconds`` (node checks run once a second), then until the broker has all."""
        end = time.monotonic() + seconds
        self.pump(lambda: time.monotonic() >= end, seconds + 1)
        assert self.pump(lambda: not self.ops._pending and self.sink.inflight == 0)

    def telemetry(self, msg: dict) -> None:
        """The observer's view of a telemetry message the core published for ``msg``'s node."""
        self.ops.published(f"{self.ops.base}/nodes/{msg['node_name']}/telemetry", json.dumps(msg).encode())

    def close(self) -> None:
        self.core.shutdown()
        self.registry.close()


def retained(*filters: str) -> dict[str, bytes]:
    """What the broker retains under ``filters``: a fresh subscriber's retained messages, complete once a
    marker published after subscribing comes back (the broker sends the retained ones first)."""
    got: dict[str, bytes] = {}
    marker = f"{PREFIX}/marker/{uuid.uuid4().hex}"
    done = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(_c, _u, m) -> None:
        if m.topic == marker:
            done.append(True)
        elif m.retain:
            got[m.topic] = bytes(m.payload)

    c.on_message = on_message
    c.connect("127.0.0.1", PORT)
    c.loop_start()
    try:
        for f in (*filters, marker):
            c.subscribe(f, qos=1)
        time.sleep(0.05)
        c.publish(marker, b"x", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done, "marker never came back"
    finally:
        c.disconnect()  # first: it wakes the network thread, which loop_stop then joins at once
        c.loop_stop()
    return got


def clear(*filters: str) -> None:
    """Leave the module's broker as the next test expects it: no retained message under ``filters``."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", PORT)
    c.loop_start()
    try:
        for topic in retained(*filters):
            c.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        c.disconnect()  # first: it wakes the network thread, which loop_stop then joins at once
        c.loop_stop()


@pytest.fixture
def names():
    uid = uuid.uuid4().hex[:8]
    gw_id, ha = f"rt-{uid}", f"ha-test-{uid}"
    yield gw_id, ha
    clear(f"{PREFIX}/{gw_id}/#", f"{ha}/#")


def _node_and_msg(node_id: int, name: str):
    node, msg = telemetry_of_every_kind()["radiohead"]
    node = replace(node, node_id=node_id, name=name, radiohead_address=node_id & 0xFF)
    return node, {**msg, "node_id": node_id, "node_name": name}


def test_a_node_renamed_while_running_leaves_nothing_under_its_old_name(tmp_path: Path, names) -> None:
    gw_id, ha = names
    base = f"{PREFIX}/{gw_id}"
    node, msg = _node_and_msg(0x2A, "shed")
    gw = Gateway(tmp_path / "gateway.db", gw_id, ha)
    try:
        gw.registry.add(node)
        gw.telemetry(msg)
        gw.settle()
        before = retained(f"{base}/#", f"{ha}/#")
        assert before[f"{base}/nodes/shed/status"] == b"online"
        assert f"{base}/nodes/shed/link" in before
        configs = {t for t in before if "_0000002a/" in t}
        assert len(configs) == 6  # temperature, humidity, RSSI, SNR, last seen, frame loss

        gw.registry.rename(0x2A, "barn")  # as `lora-gw nodes rename` beside the service
        gw.settle()  # the registry check (every 0.2 s here) sees it; no telemetry needed
        after = retained(f"{base}/#", f"{ha}/#")
        assert not [t for t in after if t.startswith(f"{base}/nodes/shed/")]
        assert after[f"{base}/nodes/barn/status"] == b"online"
        assert f"{base}/nodes/barn/link" in after
        assert {t for t in after if "_0000002a/" in t} == configs  # same entities (keyed by node id) ...
        for t in configs:  # ... now named and fed by the new name
            cfg = json.loads(after[t])
            assert cfg["device"]["name"] == "barn"
            assert cfg["state_topic"].startswith(f"{base}/nodes/barn/")
    finally:
        gw.close()


def test_at_start_what_an_earlier_run_left_for_removed_or_renamed_nodes_is_withdrawn(
    tmp_path: Path, names
) -> None:
    gw_id, ha = names
    base = f"{PREFIX}/{gw_id}"
    db = tmp_path / "gateway.db"
    keep, keep_msg = _node_and_msg(0x2A, "shed")
    gone, gone_msg = _node_and_msg(0x2B, "well")
    first = Gateway(db, gw_id, ha)
    try:
        first.registry.add(keep)
        first.registry.add(gone)
        first.telemetry(keep_msg)
        first.telemetry(gone_msg)
        first.settle()
    finally:
        first.close()
    left = retained(f"{base}/#", f"{ha}/#")
    assert {f"{base}/nodes/shed/status", f"{base}/nodes/well/status", f"{base}/nodes/well/link"} <= set(left)
    assert len([t for t in left if "_0000002b/" in t]) == 6
    # Another integration's entity in the same discovery prefix must survive the reconciliation.
    foreign = f"{ha}/sensor/kitchen_thermometer/temperature/config"
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", PORT)
    pub.loop_start()
    pub.publish(foreign, b'{"name": "Kitchen"}', qos=1, retain=True).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    with NodeRegistry(db) as reg:  # while the service is down: one node removed, the other renamed
        reg.remove(0x2B)
        reg.rename(0x2A, "barn")

    second = Gateway(db, gw_id, ha)
    try:
        second.settle()  # no telemetry at all: the retained messages alone drive it
    finally:
        second.close()
    now = retained(f"{base}/#", f"{ha}/#")
    assert not [t for t in now if t.startswith((f"{base}/nodes/well/", f"{base}/nodes/shed/"))], now.keys()
    assert not [t for t in now if "_0000002b/" in t]  # the removed node's entities are gone
    assert len([t for t in now if "_0000002a/" in t]) == 6  # the registered node keeps its entities
    assert now[foreign] == b'{"name": "Kitchen"}'
    assert now[f"{base}/status"] == b"offline"  # the gateway's own availability is untouched
