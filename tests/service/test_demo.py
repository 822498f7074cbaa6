from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.service import demo


def test_demo_runs_the_real_pipeline_to_a_real_broker(broker):
    readings = []
    summary = demo.run_demo(
        nodes=2, seconds=8.0, broker_url=broker.url, on_reading=readings.append, interval_s=2.0, speed=2.0
    )  # 2× real time: at the demo's 5× a loaded machine starves the simulated nodes' thread
    for key in ("frames_sent", "frames_heard", "frames_published", "frames_lost_air", "bytes_on_air"):
        assert isinstance(summary[key], int), key
    assert summary["frames_sent"] >= 4 and summary["bytes_on_air"] > 0
    assert summary["frames_published"] == len(readings) > 0
    other_drops = sum(v for k, v in summary["frames_dropped"].items() if k != "radio_crc_failed")
    # every frame sent is accounted for: published, lost/damaged on the air, or dropped with a reason
    assert summary["frames_sent"] == summary["frames_published"] + summary["frames_lost_air"] + other_drops
    r = readings[0]
    assert r["node_name"].startswith("sim-") and r["values"] and "rssi" in r["radio"]


def test_demo_without_broker_or_mosquitto_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(demo, "_answers", lambda *a, **k: False)
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    monkeypatch.setattr(demo.os, "access", lambda *a: False)
    with pytest.raises(GatewayError) as exc:
        demo.run_demo(nodes=1, seconds=1.0, broker_url=None, on_reading=None)
    assert "sudo apt-get install mosquitto" in exc.value.message and "\n" not in exc.value.message


def test_demo_bad_broker_url_is_a_one_line_error():
    with pytest.raises(GatewayError, match=r"--broker: scheme 'http' is not mqtt or mqtts"):
        demo.run_demo(nodes=1, seconds=1.0, broker_url="http://x", on_reading=None)
