"""Home Assistant discovery: every config passes HA's documented schema and every value_template renders a
number (or a timestamp) from the telemetry of every node kind; announce, re-announce, update and removal."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.frames import Node, NodeRegistry
from gateway.service.operations import Operations, OperationsSettings
from gateway.sinks.homeassistant import Discovery, classify, sensors_of
from tests.ops import ha_schema
from tests.ops.nodes_util import telemetry_of_every_kind


def _configs(kind: str):
    node, msg = telemetry_of_every_kind()[kind]
    d = Discovery("gw1", "lora/gw1")
    return (
        d,
        msg,
        d.node_configs(node.node_id, msg["node_name"], sensors_of(msg["values"]), node.interval_s, kind),
    )


@pytest.mark.parametrize("kind", ["model", "lpp", "radiohead"])
def test_every_config_is_valid_and_every_template_renders_from_the_telemetry(kind: str) -> None:
    d, msg, configs = _configs(kind)
    payloads = {f"lora/gw1/nodes/{msg['node_name']}/telemetry": json.dumps(msg).encode()}
    payloads[f"lora/gw1/nodes/{msg['node_name']}/link"] = json.dumps({"loss_pct": 2.5}).encode()
    ids = set()
    for topic, raw in configs:
        cfg = json.loads(raw)
        assert ha_schema.validate(topic, cfg) == [], (topic, cfg)
        assert cfg["device"]["via_device"] == d.gateway_device()["identifiers"][0]
        assert cfg["unique_id"] not in ids
        ids.add(cfg["unique_id"])
        state = ha_schema.render(cfg, payloads[cfg["state_topic"]])
        assert ha_schema.check_state(cfg, state) is None, (topic, cfg["value_template"], state)
    keys = {topic.split("/")[3] for topic, _ in configs}
    assert {"rssi", "snr", "last_seen", "frame_loss", *msg["readings"]} <= keys


def test_every_numeric_lpp_reading_becomes_a_sensor_with_the_right_class() -> None:
    _, msg, configs = _configs("lpp")
    by_key = {json.loads(raw)["unique_id"].split("0a0b0c0d_", 1)[1]: json.loads(raw) for _, raw in configs}
    assert set(msg["readings"]) <= set(by_key)
    assert by_key["barometer"]["device_class"] == "atmospheric_pressure"
    assert by_key["temperature_40"]["device_class"] == "temperature"
    assert by_key["energy"]["state_class"] == "total_increasing"
    assert "device_class" not in by_key["analog_input"]  # no unit: no class
    assert "device_class" not in by_key["percentage"]  # % alone says nothing about what it is
    assert by_key["gps_altitude"]["device_class"] == "distance"


def test_a_unit_ha_does_not_pair_with_the_class_gets_no_class() -> None:
    assert classify("temperature", "°C") == ("temperature", "measurement")
    assert classify("temperature", "degC") == (None, "measurement")
    assert classify("atmospheric_pressure", "mm") == (None, "measurement")
    assert classify("irradiance", "W/m²") == ("irradiance", "measurement")


# -- announcing, driven by the real Operations over a real registry --------------------------------------


class Recorder:
    """The part of the core Operations uses: the sink's connection state and a publish log."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.inbox: list[tuple[str, bytes]] = []
        self.subscribed: list[str] = []
        self.handlers: dict[str, object] = {}  # topic filter → handler (retained messages, see retain())
        self.sink = SimpleNamespace(
            connected=True,
            stats=SimpleNamespace(connects=1),
            take_messages=self._take,
            subscribe=self._subscribe,
        )
        self.pipeline = SimpleNamespace(last_drop=("", None, ""))
        self.outbox = SimpleNamespace(load=lambda after, n: [])

    def _subscribe(self, topic: str, handler=None, retained_only: bool = False) -> None:
        self.subscribed.append(topic)
        if handler is not None:
            assert retained_only
            self.handlers[topic] = handler

    def retain(self, topic: str, payload: bytes) -> None:
        """A retained message the broker sends on subscribing (as MqttSink's handler dispatch does)."""
        from paho.mqtt.client import topic_matches_sub

        handler = next(h for f, h in self.handlers.items() if topic_matches_sub(f, topic))
        handler(topic, payload)  # type: ignore[operator]

    def _take(self):
        out, self.inbox = self.inbox, []
        return out

    def publish_extra(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        assert retain
        self.sent.append((topic, payload))
        return True

    def stats(self) -> dict:
        return {}

    def topics(self, part: str = "") -> list[str]:
        return [t for t, _ in self.sent if part in t]


@pytest.fixture
def ops(tmp_path: Path):
    reg = NodeRegistry(tmp_path / "gateway.db")
    node, msg = telemetry_of_every_kind()["radiohead"]
    reg.add(node)
    clock = [1000.0]
    o = Operations(
        "gw1",
        "lora/gw1",
        OperationsSettings(homeassistant=True, registry_check_s=10, link_interval_s=30),
        reg.get,
        reg.nodes,
        clock=lambda: clock[0],
    )
    core = Recorder()
    o.attach(core)
    yield o, core, reg, msg, clock
    reg.close()


def test_announce_once_then_again_only_when_something_changes(ops) -> None:
    o, core, _reg, msg, clock = ops
    assert core.subscribed == [  # HA's birth, and what earlier runs left retained (reconciled on connecting)
        "homeassistant/status",
        "lora/gw1/nodes/+/status",
        "lora/gw1/nodes/+/link",
        "homeassistant/sensor/+/+/config",
    ]
    o.tick(clock[0])  # the connection: gateway entities
    assert len(core.topics("/lora_gw_gw1/")) == 6  # (issue 18 added "Models drifting")
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(msg).encode())
    assert ("lora/gw1/nodes/rh-node/status", b"online") in core.sent
    first = core.topics("lora_gw_gw1_0000002a")
    assert len(first) == 2 + 4  # temperature, humidity + RSSI, SNR, last seen, frame loss
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(msg).encode())
    assert core.topics("lora_gw_gw1_0000002a") == first  # nothing new: nothing re-sent
    grown = {**msg, "values": [*msg["values"], {"channel": 3, "type": "voltage", "value": 3.3, "unit": "V"}]}
    grown["values"] = grown["values"][1:]  # and the temperature channel is gone
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(grown).encode())
    assert ("homeassistant/sensor/lora_gw_gw1_0000002a/temperature/config", b"") in core.sent
    assert "homeassistant/sensor/lora_gw_gw1_0000002a/voltage/config" in core.topics()


def test_ha_birth_reannounces_everything(ops) -> None:
    o, core, _reg, msg, clock = ops
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(msg).encode())
    o.tick(clock[0])
    before = len(core.sent)
    core.inbox.append(("homeassistant/status", b"online"))
    clock[0] += 1.5
    o.tick(clock[0])
    again = [t for t, p in core.sent[before:] if t.endswith("/config") and p]
    assert len(again) == 6 + 6  # (issue 18 added "Models drifting")


def test_removed_node_loses_its_entities_and_a_silent_node_goes_offline(ops) -> None:
    o, core, reg, msg, clock = ops
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(msg).encode())
    clock[0] += 200.0  # interval 60 s: offline after 3 intervals (180 s)
    o.tick(clock[0])
    assert ("lora/gw1/nodes/rh-node/status", b"offline") in core.sent
    reg.remove(msg["node_id"])
    clock[0] += 11.0
    o.tick(clock[0])
    emptied = {t for t, p in core.sent if p == b"" and "lora_gw_gw1_0000002a" in t}
    assert len(emptied) == 6
    assert ("lora/gw1/nodes/rh-node/status", b"") in core.sent
    assert o.monitor.nodes() == []


def test_a_registered_node_never_heard_is_announced_offline(ops) -> None:
    o, core, reg, _msg, clock = ops
    reg.add(Node(node_id=0x77, name="quiet", interval_s=10.0))
    clock[0] += 120.0
    o.tick(clock[0])
    assert ("lora/gw1/nodes/quiet/status", b"offline") in core.sent


def test_a_silent_node_renamed_moves_its_offline_status(ops) -> None:
    o, core, reg, _msg, clock = ops
    reg.add(Node(node_id=0x77, name="quiet", interval_s=10.0))
    clock[0] += 120.0
    o.tick(clock[0])
    assert ("lora/gw1/nodes/quiet/status", b"offline") in core.sent
    reg.rename(0x77, "hush")
    clock[0] += 11.0
    o.tick(clock[0])
    assert core.sent[-2:] == [
        ("lora/gw1/nodes/quiet/status", b""),
        ("lora/gw1/nodes/hush/status", b"offline"),
    ]


def test_a_renamed_node_with_retained_telemetry_clears_that_too(tmp_path: Path) -> None:
    reg = NodeRegistry(tmp_path / "gateway.db")
    node, msg = telemetry_of_every_kind()["radiohead"]
    reg.add(node)
    clock = [1000.0]
    settings = OperationsSettings(registry_check_s=10, retain_telemetry=True)
    o = Operations("gw1", "lora/gw1", settings, reg.get, reg.nodes, clock=lambda: clock[0])
    core = Recorder()
    o.attach(core)
    assert "lora/gw1/nodes/+/telemetry" in core.subscribed
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(msg).encode())
    reg.rename(node.node_id, "rh-renamed")
    clock[0] += 11.0
    o.tick(clock[0])
    for suffix in ("status", "link", "telemetry"):
        assert (f"lora/gw1/nodes/rh-node/{suffix}", b"") in core.sent
    assert ("lora/gw1/nodes/rh-renamed/status", b"online") in core.sent
    reg.close()


def test_a_channel_dropped_while_the_gateway_was_down_loses_its_entity(ops) -> None:
    """The broker still holds a config of the registered node that its telemetry no longer has: the first
    announcement of this run withdraws it; the others it replaces."""
    o, core, _reg, msg, clock = ops
    stale = "homeassistant/sensor/lora_gw_gw1_0000002a/pressure/config"
    kept = "homeassistant/sensor/lora_gw_gw1_0000002a/temperature/config"
    body = json.dumps({"device": {"via_device": "lora_gw_gw1"}}).encode()
    core.retain(stale, body)
    core.retain(kept, body)
    core.retain("homeassistant/sensor/lora_gw_gw1_0000002a_x/y/config", body)  # not one of ours
    o.tick(clock[0])
    assert not [t for t, p in core.sent if p == b""]  # a registered node: nothing withdrawn yet
    o.published("lora/gw1/nodes/rh-node/telemetry", json.dumps(msg).encode())
    assert (stale, b"") in core.sent
    assert (kept, b"") not in core.sent and kept in core.topics()
    assert [t for t, p in core.sent if p == b""] == [stale]
