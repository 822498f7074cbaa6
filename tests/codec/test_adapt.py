"""Issue 18 item 2: incremental training, and ``model retrain`` on the gateway's own history.

Regime change: the shipped demo model was trained on a year of Greensboro (North Carolina) weather;
``data/sandpoint-1800.csv`` is the first 1800 hours of the TMY3 year of Sand Point (Alaska), the other
TMY3 file pvlib ships, in the same five channels at the same steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.cli.main import main
from gateway.codec import ModelStore, demo_model
from gateway.codec.adapt import adapt, score
from gateway.codec.csvio import read_csv, write_csv
from gateway.codec.errors import DataError
from gateway.pipeline.render import NodeCache, Renderer
from gateway.sinks.history import HistoryReader
from gateway.sinks.history_export import export
from tests.history.util import HOUR_MS, T0_MS, Site, install_demo

DATA = Path(__file__).parent / "data"
NODE = 0x5A01


@pytest.fixture(scope="module")
def sandpoint() -> np.ndarray:
    return read_csv(DATA / "sandpoint-1800.csv", demo_model().schema)[0]


def test_adapting_to_another_site_beats_the_stale_model_losslessly(sandpoint):
    stale = demo_model()
    fit, judge = sandpoint[:1440], sandpoint[1440:]
    new = adapt(stale, fit)
    assert (new.model_id, new.version, new.samples_per_frame) == (0, 2, 16)
    assert new.params.buckets == stale.params.buckets and new.fingerprint != stale.fingerprint
    before, after = score(stale, [judge]), score(new, [judge])
    assert after["lossless"]
    assert after["bytes_per_sample"] < 0.95 * before["bytes_per_sample"]
    assert new.meta["training"]["init"] == "0@1"
    assert sum(after["channel_bytes_per_sample"].values()) <= after["bytes_per_sample"]


def test_adapt_refuses_another_channel_count_or_frame_size(sandpoint):
    with pytest.raises(DataError, match="has 5 channels; the data have 4"):
        adapt(demo_model(), sandpoint[:400, :4])
    with pytest.raises(DataError, match="need at least 32 samples"):
        adapt(demo_model(), sandpoint[:20])


def test_train_init_cli_adapts_and_refuses_another_schema(tmp_path, sandpoint, capsys):
    stale = tmp_path / "stale.npz"
    from gateway.codec.weights import save

    save(demo_model(), stale)
    csv = tmp_path / "sp.csv"
    write_csv(csv, demo_model().schema, sandpoint[:800])
    schema = tmp_path / "w.toml"
    schema.write_text((DATA / "weather.toml").read_text())
    out = tmp_path / "v2.npz"
    args = ["model", "train", "--init", str(stale), "--data", str(csv), "--schema", str(schema)]
    assert main([*args, "--samples-per-frame", "16", "--out", str(out)]) == 0
    assert "model 0@2" in capsys.readouterr().out
    assert main([*args, "--samples-per-frame", "8", "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert "sends 16 samples per frame, not 8" in err and err.count("\n") == 1
    other = tmp_path / "o.toml"
    other.write_text((DATA / "weather.toml").read_text().replace("step = 0.1", "step = 0.5", 1))
    csv2 = tmp_path / "half.csv"
    csv2.write_text("temperature,humidity,pressure,wind_speed,irradiance\n" + "4.0,93,1012,2.1,0\n" * 64)
    assert main(["model", "train", "--init", str(stale), "--data", str(csv2), "--schema", str(other),
                 "--samples-per-frame", "16", "--out", str(out)]) == 2
    assert "--schema differs: incremental training keeps the schema" in capsys.readouterr().err


def days_since_t0() -> str:
    return f"{(time.time() * 1000 - T0_MS) / 86400_000 + 5:.0f}"


def test_retrain_from_streamed_history_installs_a_version_the_gateway_decodes(tmp_path, sandpoint, capsys):
    """A model from one site, another site's telemetry streamed through the pipeline: `model retrain`
    installs 0@2, frames made with 0@2 are accepted and decoded, 0@1 frames still are."""
    old = install_demo(tmp_path)
    site = Site(tmp_path, [NODE])
    try:
        assert site.stream(NODE, old, sandpoint[:1600], T0_MS) == 100
        state = ["--state-dir", str(tmp_path)]
        report = tmp_path / "r.html"
        assert main([*state, "model", "retrain", "0", "--days", days_since_t0(), "--dry-run"]) == 0
        assert "dry run: model 0@2 would be installed" in capsys.readouterr().out
        assert ModelStore(tmp_path).versions(0) == [1]
        days = ["--days", days_since_t0()]
        code = main([*state, "model", "retrain", "0", *days, "--json", "--report", str(report)])
        result = json.loads(capsys.readouterr().out)
        assert code == 0 and result["installed"] and result["after"]["lossless"]
        assert result["gain_pct"] >= 3.0 and result["train_samples"] + result["test_samples"] == 1600
        assert "0@2" in report.read_text()
        store = ModelStore(tmp_path)
        new = store.load(0, 2)
        assert store.active(0).version == 2 and store.versions(0) == [1, 2]
        assert new.meta["metrics"]["evaluation"]["bytes_per_sample"] == result["after"]["bytes_per_sample"]
        # the node switches: its next frames are made with 0@2, and the gateway decodes them
        t = T0_MS + 1600 * HOUR_MS
        assert site.stream(NODE, new, sandpoint[1600:1776], t) == 11
        assert site.stream(NODE, old, sandpoint[1776:1792], t + 176 * HOUR_MS) == 1  # and the old one
        with HistoryReader(tmp_path / "gateway.db") as r:
            exp = export(r, store, 0)
            uses = {(u.model_version, u.frames) for u in r.node_models(0)}
        assert np.array_equal(exp.series[0].q, sandpoint[:1792]) and not exp.skipped
        # and the renderer publishes the 0@2 frames as telemetry, decoded with exactly that version
        renderer = Renderer("gw", "lora", NodeCache(site.registry.get), site.models.model)
        rendered = [renderer.render(f) for f in site.outbox.load(0, 10_000)]
        assert all(r is not None and not r.topic.endswith("/raw") for r in rendered)
        bodies = [json.loads(r.payload) for r in rendered]
        assert len(bodies) == 112 and [b["model_version"] for b in bodies].count(2) == 11
        assert all("undecoded" not in b and b["readings"] for b in bodies)
        assert uses == {(1, 101), (2, 11)}
        # not better enough: refused, nothing installed
        assert main([*state, "model", "retrain", "0", "--days", days_since_t0(), "--min-gain", "90"]) == 1
        assert "not installed: gain" in capsys.readouterr().out
        assert ModelStore(tmp_path).versions(0) == [1, 2]
    finally:
        site.close()


def test_retrain_without_enough_history_says_so(tmp_path, capsys):
    install_demo(tmp_path)
    Site(tmp_path, [NODE]).close()
    assert main(["--state-dir", str(tmp_path), "model", "retrain", "0"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (after the progress lines)
    assert last.startswith("lora-gw: only 0 samples of model 0 in the last 60 days of history;")


def test_retrain_judges_the_bitstream_part_a_node_holds_not_the_whole_weight_file(
    tmp_path, sandpoint, monkeypatch
):
    """The weight file may carry the learned time structure for ``model generate`` (it never leaves
    the gateway: ~0.5 KB for these 5 channels, several KB for many): a candidate whose bitstream part
    fits the limit is installed even when the whole file does not; one whose bitstream part exceeds it
    is refused, saying so. The limit is set between the two parts' sizes (4096 at 5 channels fits both)."""
    from gateway.codec import generate
    from gateway.codec.weights import bitstream_bytes, to_bytes
    from gateway.sinks import retrain

    real_adapt = retrain.adapt

    def adapt_with_time_structure(init, q, **kw):
        candidate = real_adapt(init, q, **kw)
        assert generate.attach(candidate, q, None, 1 << 16) is not None  # the richest one learned
        return candidate

    monkeypatch.setattr(retrain, "adapt", adapt_with_time_structure)
    old = install_demo(tmp_path)
    site = Site(tmp_path, [NODE])
    try:
        assert site.stream(NODE, old, sandpoint[:1600], T0_MS) == 100
        days = float(days_since_t0())
        out = retrain.retrain_model(tmp_path, 0, days=days, dry_run=True)
        whole, part = out.result["weight_file_bytes"], out.result["bitstream_bytes"]
        assert whole == len(to_bytes(out.candidate)) and part == bitstream_bytes(out.candidate)
        assert whole >= part + 300 and out.candidate.meta["generation"]["format"]
        monkeypatch.setattr(retrain, "MAX_WEIGHT_BYTES", part + 100)  # the whole file is over it
        out = retrain.retrain_model(tmp_path, 0, days=days)
        assert out.installed and out.result["refused"] is None
        assert ModelStore(tmp_path).load(0, 2).meta["generation"]["format"]  # installed with it
        # the metadata (training time, dates) makes a candidate's size vary by a few bytes from run to run
        monkeypatch.setattr(retrain, "MAX_WEIGHT_BYTES", part - 64)
        out = retrain.retrain_model(tmp_path, 0, version=1, days=days)
        part, whole = out.result["bitstream_bytes"], out.result["weight_file_bytes"]
        assert not out.installed and out.result["refused"] == (
            f"its bitstream part ({part} bytes of the {whole}-byte weight file) exceeds the"
            f" {retrain.MAX_WEIGHT_BYTES} bytes a node holds"
        )
        assert part > retrain.MAX_WEIGHT_BYTES and ModelStore(tmp_path).versions(0) == [1, 2]
    finally:
        site.close()


def test_adapting_to_a_sensor_that_reads_on_a_lattice_takes_its_lattice():
    """A new site's sensor in other units (whole °F stored in 0.1 °C steps: a lattice of 5.56 steps):
    the adapted model codes the lattice as a scratch training would (revision 6: as lattice indices;
    before, as a residual grid), instead of the old model's plain values."""
    from gateway.codec import Channel, Schema, train
    from gateway.codec.train import frames_of

    rng = np.random.default_rng(2)
    schema = Schema((Channel("t", "", 1.0), Channel("h", "", 1.0)))
    smooth = 2000 + np.cumsum(rng.integers(-12, 13, size=(2400, 2)), axis=0)
    old = train(smooth, schema, 16, buckets=3)
    assert old.params.grid.tolist() == [256, 256]
    whole_f = np.cumsum(rng.integers(-2, 3, size=(2400, 2)), axis=0)
    lattice = np.rint(2000 + whole_f * 5.5556).astype(np.int64)
    adapted = adapt(old, lattice[:1600])
    assert (adapted.params.vmap[:, 3] != 0).all()
    assert (train(lattice[:1600], schema, 16, buckets=3).params.vmap[:, 3] != 0).all()
    held = [lattice[1600:]]
    assert score(adapted, held)["bytes_per_sample"] < 0.9 * score(old, held)["bytes_per_sample"]
    for frame in frames_of(lattice[1600:], 16)[:8]:
        assert adapted.decode(adapted.encode(frame)).tolist() == frame.tolist()
