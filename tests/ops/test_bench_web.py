"""bench/web.py runs with tiny parameters and reports the three variants side by side (structure only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "web.py"


def test_web_bench_reports_core_observer_and_web_in_one_run() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--json",
            "--seconds",
            "0.5",
            "--frames",
            "200",
            "--page-interval",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    for name in ("core", "observer", "web"):
        assert {"latency_ms_p50", "latency_ms_p99", "frames_per_s", "frames_per_cpu_s"} <= set(r[name]), name
    assert r["web"]["scrapes"] > 0 and r["web"]["scrape_errors"] == 0  # the listener really was scraped
    assert "web_rss_mb" in r["web"] and set(r["ratios"]) >= {"web_over_observer_latency_p99"}
