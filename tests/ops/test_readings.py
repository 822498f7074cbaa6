"""Telemetry for home automation: a flat ``readings`` object beside ``values``, a time per sample."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

from gateway.pipeline.render import flat_readings, stamp_samples
from tests.ops.nodes_util import LPP_READINGS, telemetry_of_every_kind


def _t(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_readings_mirror_values_for_every_node_kind() -> None:
    msgs = telemetry_of_every_kind()
    _, model_msg = msgs["model"]
    assert model_msg["readings"] == {v["name"]: v["value"] for v in model_msg["values"]}
    _, rh = msgs["radiohead"]
    assert rh["readings"] == {"temperature": 6.8, "humidity": 81.5}
    assert [v["type"] for v in rh["values"]] == ["temperature", "humidity"]  # the list stays


def test_lpp_keys_are_unique_and_multi_field_readings_are_flattened() -> None:
    _, msg = telemetry_of_every_kind()["lpp"]
    r = msg["readings"]
    assert r["temperature"] == -3.5 and r["temperature_40"] == 21.5  # the second temperature: its channel
    assert r["accelerometer_x"] == 1.5 and r["gyrometer_z"] == 1.5
    assert (r["gps_latitude"], r["gps_longitude"], r["gps_altitude"]) == (52.5, 13.4, 34.0)
    assert len(msg["values"]) == len(LPP_READINGS)
    assert all(not isinstance(v, dict | list) for v in r.values())


def test_a_key_colliding_with_a_dict_method_is_still_a_plain_key() -> None:
    out = flat_readings(
        [{"channel": 0, "name": "values", "value": 1.0}, {"channel": 1, "name": "items", "value": 2}]
    )
    assert out == {"values": 1.0, "items": 2}


def test_samples_are_timed_back_from_the_receive_time() -> None:
    _, msg = telemetry_of_every_kind(utc_ms=1_700_000_000_000)["model"]
    samples = msg["samples"]
    assert len(samples) > 1
    times = [_t(s["time"]) for s in samples]
    assert times[-1] == _t(msg["received"])  # the last sample was taken when the frame was received
    step = timedelta(seconds=300.0 / len(samples))  # the node's reporting interval over its samples
    assert all(abs((b - a) - step) < timedelta(milliseconds=2) for a, b in pairwise(times))


def test_the_models_sampling_interval_wins_and_no_interval_means_no_time() -> None:
    samples = [{"t": 1}, {"t": 2}, {"t": 3}]
    stamp_samples(samples, 1_700_000_010_000, 5.0, 300.0)
    assert [s["time"] for s in samples] == [
        "2023-11-14T22:13:20.000Z",
        "2023-11-14T22:13:25.000Z",
        "2023-11-14T22:13:30.000Z",
    ]
    bare = [{"t": 1}, {"t": 2}]
    stamp_samples(bare, 1_700_000_010_000, None, None)
    assert bare == [{"t": 1}, {"t": 2}]
