"""The demo through a real Mosquitto with its web listener on: Home Assistant discovery as a consumer sees
it (schema, templates rendered against the live messages, re-announcement on HA's birth message), node
availability, the JSON endpoints and Prometheus ``/metrics``."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.service.demo import run_demo
from tests.ops import ha_schema
from tests.service.conftest import Broker, free_port
from tests.service.helpers import Collector

NODES = 3


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[dict[str, Any]]:
    b = Broker(workdir=tmp_path_factory.mktemp("mosquitto"), port=free_port())
    b.start()
    col = Collector(b.port, "#")
    stop = threading.Event()
    web_port = free_port()
    result: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: result.update(
            run_demo(NODES, None, b.url, None, speed=8.0, seed=4, web=("127.0.0.1", web_port), stop=stop)
        ),
        daemon=True,
    )
    t.start()
    try:
        ok = col.wait_for(
            lambda: (
                len({m["node_name"] for m in col.json_on("/telemetry")}) == NODES
                and len(col.json_on("/link")) >= NODES
            ),
            20,
        )
        assert ok, "the demo's nodes did not all report"
        col.wait_for(lambda: json.loads(_get(web_port, "/api/status")).get("received", 0) > 0, 10)
        out = {
            "collector": col,
            "web_port": web_port,
            "metrics": _get(web_port, "/metrics").decode(),
            "api": {p: json.loads(_get(web_port, p)) for p in ("/api/status", "/api/nodes", "/api/packets")},
        }
        before = list(col.messages)
        announced = {t_ for t_, p, _ in before if t_.endswith("/config") and p}
        col.client.publish("homeassistant/status", b"online", qos=1)

        def again() -> set[str]:
            return {t_ for t_, p, _ in col.messages[len(before):] if t_.endswith("/config") and p}

        # the re-announcement is a burst of publishes: wait for all of it, not its first message
        col.wait_for(lambda: announced <= again(), 20)
        out["announced_before_birth"] = announced
        out["announced_after_birth"] = again()
        yield out
    finally:
        stop.set()
        t.join(30)
        col.wait_for(lambda: bool(col.json_on("/stats")), 5)
        col.close()
        b.stop()


def _configs(col: Collector) -> dict[str, dict]:
    out = {}
    for topic, payload, _ in col.messages:
        if topic.startswith("homeassistant/") and topic.endswith("/config") and payload:
            out[topic] = json.loads(payload)
    return out


def _last_on(col: Collector, topic: str) -> bytes | None:
    got = [p for t, p, _ in col.messages if t == topic and p]
    return got[-1] if got else None


def test_discovery_from_the_live_demo_is_valid_and_every_template_renders(live) -> None:
    col = live["collector"]
    configs = _configs(col)
    node_devices = {c["device"]["name"] for c in configs.values() if "via_device" in c["device"]}
    assert node_devices == {f"sim-{i + 1}" for i in range(NODES)}
    rendered = 0
    for topic, cfg in configs.items():
        assert ha_schema.validate(topic, cfg) == [], (topic, cfg)
        payload = _last_on(col, cfg["state_topic"])
        if payload is None and cfg["state_topic"].endswith("/stats"):
            continue  # the demo publishes stats on stop; checked in the next test
        assert payload is not None, f"nothing on {cfg['state_topic']}"
        state = ha_schema.render(cfg, payload)
        assert ha_schema.check_state(cfg, state) is None, (topic, cfg["value_template"], state)
        rendered += 1
    assert rendered >= NODES * (5 + 4)  # five weather channels and four diagnostics per node


def test_gateway_diagnostics_render_from_the_stats_topic(live) -> None:
    col = live["collector"]
    status = live["api"]["/api/status"]  # the same figures the stats topic carries
    payload = json.dumps({**status, "nodes": {}}).encode()
    gateway_cfgs = [c for c in _configs(col).values() if "via_device" not in c["device"]]
    assert len(gateway_cfgs) == 6  # (issue 18 added "Models drifting")
    for cfg in gateway_cfgs:
        assert ha_schema.check_state(cfg, ha_schema.render(cfg, payload)) is None, cfg


def test_ha_birth_message_makes_the_gateway_announce_again(live) -> None:
    before, after = live["announced_before_birth"], live["announced_after_birth"]
    assert len(before) >= NODES * (5 + 4)
    assert sorted(before - after) == []  # every entity announced before HA's birth is announced again


def test_nodes_are_announced_online_with_retained_status(live) -> None:
    col = live["collector"]
    for i in range(NODES):
        assert _last_on(col, f"lora/demo/nodes/sim-{i + 1}/status") == b"online"
    link = json.loads(_last_on(col, "lora/demo/nodes/sim-1/link") or b"{}")
    assert set(link) == {"last_seen", "rssi", "snr", "frames", "lost", "loss_pct"}


def test_json_endpoints_show_nodes_packets_and_health(live) -> None:
    api = live["api"]
    nodes = api["/api/nodes"]["nodes"]
    assert {n["name"] for n in nodes} == {f"sim-{i + 1}" for i in range(NODES)}
    assert all(n["values"] and n["rssi"] is not None and n["online"] for n in nodes)
    assert set(api["/api/nodes"]["history"]) == {n["name"] for n in nodes}
    packets = api["/api/packets"]["packets"]
    assert packets and {"time", "node", "rssi", "snr", "size", "result"} <= set(packets[0])
    assert api["/api/status"]["mqtt"]["connected"] is True


def test_metrics_use_conventional_names_and_match_the_stats(live) -> None:
    families = {f.name: f for f in text_string_to_metric_families(live["metrics"])}
    assert all(name.startswith("lora_gw_") for name in families)
    for name in (
        "packets_received",
        "frames_accepted",
        "packets_dropped",
        "radio_crc_failures",
        "messages_published",
        "mqtt_reconnects",
        "mqtt_loop_restarts",
        "radio_recoveries",
        "node_counter_gaps",
    ):
        fam = families[f"lora_gw_{name}"]
        assert fam.type == "counter"
        assert all(s.name.endswith("_total") for s in fam.samples), name
    for name in (
        "outbox_depth_frames",
        "outbox_oldest_age_seconds",
        "outbox_size_bytes",
        "node_rssi_dbm",
        "node_snr_db",
        "model_bytes_per_sample",
    ):
        assert families[f"lora_gw_{name}"].type == "gauge", name
    rssi = {s.labels["node"]: s.value for s in families["lora_gw_node_rssi_dbm"].samples}
    assert set(rssi) == {f"sim-{i + 1}" for i in range(NODES)}
    assert families["lora_gw_model_bytes_per_sample"].samples[0].value > 0
    received = families["lora_gw_packets_received"].samples[0].value
    assert received >= NODES


def test_the_listener_is_read_only(live) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{live['web_port']}/api/nodes", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 405
