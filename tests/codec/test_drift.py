"""Issue 18 item 3: drift of a model whose nodes moved to another regime, judged on live traffic."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.codec import ModelStore, demo_model
from gateway.codec.adapt import adapt, score
from gateway.codec.csvio import read_csv
from gateway.codec.drift import DriftingStats, DriftMonitor, DriftSettings
from gateway.codec.weights import save
from gateway.pipeline.render import NodeCache, Renderer
from tests.history.util import T0_MS, Site, install_demo

DATA = Path(__file__).parent / "data"
NODE = 0x5A01
MINUTE_MS = 60_000


def render_all(site: Site, stats: DriftingStats, clock: list[float]) -> int:
    """Publish every stored frame through the service's renderer, the clock at its receive time."""
    renderer = Renderer("gw", "lora", NodeCache(site.registry.get), site.models.model, stats)
    n = 0
    for stored in site.outbox.load(0, 100_000):
        clock[0] = stored.frame.radio.utc_ms / 1000
        if renderer.render(stored) is not None:
            n += 1
    return n


def test_a_model_from_another_site_drifts_once_and_a_fitting_one_does_not(tmp_path, caplog):
    """The Greensboro demo model decoding Sand Point weather, a sample a minute for 30 hours."""
    old = install_demo(tmp_path)
    q = read_csv(DATA / "sandpoint-1800.csv", demo_model().schema)[0]
    site = Site(tmp_path, [NODE])
    clock = [T0_MS / 1000]
    stats = DriftingStats(DriftMonitor(DriftSettings(), clock=lambda: clock[0]))
    try:
        site.stream(NODE, old, q, T0_MS, MINUTE_MS)
        with caplog.at_level(logging.WARNING, logger="gateway.codec.drift"):
            assert render_all(site, stats, clock) == 112
        drift = stats.snapshot()["0@1"]["drift"]
        assert drift["drift"] is True and drift["reports"] == 1
        assert drift["reported"]["degradation_pct"] >= 10 and drift["suggested"] == "lora-gw model retrain 0"
        warnings = [r.getMessage() for r in caplog.records if "drift" in r.getMessage()]
        assert len(warnings) == 1 and "suggested: lora-gw model retrain 0" in warnings[0]
        assert stats.snapshot()["0@1"]["frames"] == 112  # the live stats are still there
        # a version adapted to the new site, judged on data it was not fitted to, does not drift
        new = adapt(old, q[:900])
        judged = score(new, [q[900:1200]])["bytes_per_sample"]
        new.meta["metrics"]["evaluation"] = {"bytes_per_sample": judged}
        save(new, tmp_path / "v2.npz")
        ModelStore(tmp_path).install(tmp_path / "v2.npz")
        start = T0_MS + 1800 * MINUTE_MS
        for day in range(2):  # the same site's next two days, as the node now sends them
            site.stream(NODE, new, q[:1440], start + day * 1440 * MINUTE_MS, MINUTE_MS)
        render_all(site, stats, clock)
        fitted = stats.snapshot()["0@2"]["drift"]
        assert fitted["drift"] is False and fitted["reports"] == 0 and fitted["degradation_pct"] < 10
    finally:
        site.close()


def test_no_drift_before_a_whole_window_of_traffic_or_within_the_threshold():
    model = demo_model()
    ref = model.meta["metrics"]["bytes_per_sample"]
    t = [0.0]
    settings = DriftSettings(threshold_pct=10, window_s=24 * 3600, min_samples=16)
    mon = DriftMonitor(settings, clock=lambda: t[0])
    for _ in range(23):  # 23 h at +20 %: not judged yet
        mon.observe(model, round(16 * ref * 1.2), 16)
        t[0] += 3600
    assert mon.drifting() == []
    mon.observe(model, round(16 * ref * 1.2), 16)
    t[0] += 3600
    mon.observe(model, round(16 * ref * 1.2), 16)
    assert mon.drifting() == ["0@1"]
    for _ in range(30):  # back to normal: armed again once under half the threshold
        t[0] += 3600
        mon.observe(model, round(16 * ref), 16)
    assert mon.drifting() == [] and mon.snapshot()["0@1"]["reports"] == 1

    steady = DriftMonitor(DriftSettings(min_samples=16), clock=lambda: t[0])
    for _ in range(48):  # +5 %, under the threshold, for two days
        steady.observe(model, round(16 * ref * 1.05), 16)
        t[0] += 3600
    assert steady.drifting() == [] and steady.snapshot()["0@1"]["degradation_pct"] < 10


def test_drift_shows_as_a_prometheus_gauge_and_a_home_assistant_diagnostic():
    import json

    from gateway.sinks.homeassistant import Discovery
    from gateway.web.metrics import render
    from tests.ops import ha_schema

    model = demo_model()
    ref = model.meta["metrics"]["bytes_per_sample"]
    t = [0.0]
    stats = DriftingStats(DriftMonitor(DriftSettings(min_samples=16), clock=lambda: t[0]))
    for _ in range(26):  # a day of frames 30 % larger than the model's evaluation figure
        stats.drift.observe(model, round(16 * ref * 1.3), 16)
        t[0] += 3600
    snap = {"models": stats.snapshot()}
    assert snap["models"]["0@1"]["drift"]["drift"] is True
    text = render(lambda: snap).decode()
    assert 'lora_gw_model_drift{model="0@1"} 1.0' in text
    assert 'lora_gw_model_drift_degradation_pct{model="0@1"}' in text
    [cfg] = [
        json.loads(body)
        for topic, body in Discovery("gw1", "lora/gw1").gateway_configs(60)
        if "/models_drifting/" in topic
    ]
    assert ha_schema.validate("homeassistant/sensor/lora_gw_gw1/models_drifting/config", cfg) == []
    assert ha_schema.render(cfg, json.dumps(snap).encode()) == "1"
    assert ha_schema.render(cfg, json.dumps({"models": {"0@1": {"frames": 3}}}).encode()) == "0"
