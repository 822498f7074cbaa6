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
    control = sum(summary["frames_control"].values())  # node-info reports: verified, not published
    # every frame sent is accounted for: published, lost/damaged on the air, dropped with a reason, or
    # taken as a node's report
    assert summary["frames_sent"] == (
        summary["frames_published"] + summary["frames_lost_air"] + other_drops + control
    )
    assert summary["node_info_reports"] == control > 0  # the simulated nodes report at boot
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


PW = "S3cretPW"


def test_demo_takes_broker_credentials_from_the_environment(broker_factory):
    b = broker_factory(passwords={"gw": PW})  # anonymous access off: only the right password connects
    readings = []
    summary = demo.run_demo(
        nodes=1,
        seconds=4.0,
        broker_url=f"mqtt://127.0.0.1:{b.port}",
        on_reading=readings.append,
        interval_s=1.0,
        env={"LORA_GW_MQTT_USERNAME": "gw", "LORA_GW_MQTT_PASSWORD": PW},
    )
    assert summary["frames_published"] == len(readings) > 0
    assert summary["broker"] == f"mqtt://gw@127.0.0.1:{b.port}" and PW not in repr(summary)


def test_environment_credentials_override_the_urls_and_need_a_user():
    url = demo.parse_broker_url("mqtt://u0:p0@h")
    assert demo.with_env_credentials(url, {}) == url
    both = demo.with_env_credentials(url, {"LORA_GW_MQTT_USERNAME": "u1", "LORA_GW_MQTT_PASSWORD": "p1"})
    assert (both.username, both.password) == ("u1", "p1")
    with pytest.raises(GatewayError) as exc:
        demo.with_env_credentials(demo.parse_broker_url("mqtt://h"), {"LORA_GW_MQTT_PASSWORD": PW})
    assert (
        exc.value.message.startswith("--broker: a password needs a user name") and PW not in exc.value.message
    )


def test_demo_cli_never_prints_the_password(broker_factory, capsys, monkeypatch):
    from gateway.cli import main as cli

    b = broker_factory(passwords={"gw": PW})
    monkeypatch.setenv("LORA_GW_MQTT_USERNAME", "gw")
    monkeypatch.setenv("LORA_GW_MQTT_PASSWORD", PW)
    argv = ["demo", "--nodes", "1", "--seconds", "3", "--broker", f"mqtt://127.0.0.1:{b.port}"]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    assert "summary:" in out.out and f"mqtt://gw@127.0.0.1:{b.port}" in out.out
    assert PW not in out.out + out.err and out.err == ""
    # a password typed into the URL still works, with a warning, and is not repeated either
    monkeypatch.delenv("LORA_GW_MQTT_PASSWORD")
    argv[-1] = f"mqtt://gw:{PW}@127.0.0.1:{b.port}"
    assert cli.main([*argv, "--json"]) == 0
    out = capsys.readouterr()
    assert out.err.startswith("lora-gw: warning: a password on the command line is visible")
    assert PW not in out.out + out.err


def test_demo_bad_broker_url_never_shows_the_password():
    with pytest.raises(GatewayError) as exc:
        demo.run_demo(nodes=1, seconds=1.0, broker_url=f"mqtt://gw:{PW}@h/x", on_reading=None)
    assert exc.value.message.startswith("--broker: 'mqtt://<redacted>@h/x' has a path")
