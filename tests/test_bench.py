"""bench/radio.py and bench/pipeline.py run with tiny parameters and report ours beside a baseline.

Structural checks only (keys, counts, which side does more SPI work); never timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
FIGURES = (
    "spi_transactions_per_packet",
    "spi_bytes_per_packet",
    "driver_us_per_packet",
    "modelled_pi_us_per_packet",
)


def _bench(name: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH / name), "--json", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_radio_bench_reports_our_driver_beside_the_public_style_baseline() -> None:
    r = _bench("radio.py", "--duration", "1", "--rate", "60", "--nodes", "6", "--seed", "3")
    for key in ("packets_sent", "packets_received", "packets_lost", *FIGURES, "baseline", "ratios"):
        assert key in r, key
    assert r["packets_sent"] > 0 and r["packets_received"] > 0 and r["every_loss_explained"]
    assert r["packets_lost"] == r["packets_sent"] - r["packets_received"]
    base = r["baseline"]
    assert base["packets_received"] > 0
    assert base["packets_received"] == base["heard_by_chip"]  # no RxDone missed by the baseline either
    assert base["packets_lost"] == r["packets_sent"] - base["packets_received"]
    assert base["received_crc_ok"] + base["received_crc_failed_discarded"] == base["packets_received"]
    assert r["spi_transactions_per_packet"] <= 3
    assert base["spi_transactions_per_packet"] > r["spi_transactions_per_packet"]
    # byte-per-transaction FIFO: 7 register transactions plus one per payload byte (16 by default)
    assert base["spi_transactions_per_packet"] == 7 + 16
    ratios = r["ratios"]["baseline_over_ours"]
    assert set(ratios) == set(FIGURES)
    assert ratios["spi_transactions_per_packet"] == pytest.approx(
        base["spi_transactions_per_packet"] / r["spi_transactions_per_packet"], rel=0.01
    )


def test_pipeline_bench_reports_ours_beside_bare_paho_on_the_same_messages() -> None:
    r = _bench("pipeline.py", "--frames", "200", "--seconds", "0.5", "--rate", "100")
    ours = ("frames_per_s", "frames_per_cpu_s", "latency_ms_p50", "latency_ms_p99", "rss_mb")
    for key in ours:
        assert r[key] > 0, key
    assert r["frames_accepted"] == 200 + 50 and r["frames_dropped"] == {}
    assert r["baseline_messages"] == 200  # every frame of the throughput run, published again
    for name in ("bare_paho", "paho_loop_start"):
        for unit in ("frames_per_s", "frames_per_cpu_s"):
            baseline = r[f"baseline_{name}_{unit}"]
            assert baseline > 0
            assert r["ratios"][f"ours_over_{name}_{unit}"] == pytest.approx(r[unit] / baseline, rel=0.01)
