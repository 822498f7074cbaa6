"""bench/frames.py runs and its fuzzer finds no crash (a small count here; the full million by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "frames.py"


def _bench(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_fuzz_every_decoder_without_crashes() -> None:
    result = _bench("--fuzz", "4000", "--seed", "7", "--json")
    assert result["inputs"] == 4000 and result["crashes"] == 0
    assert set(result["decoders"]) == {"frame", "frame_hinted", "frame_inspect", "lpp", "radiohead"}
    for name, report in result["decoders"].items():
        assert report["crashes"] == 0, (name, report["examples"])
        assert 0 < report["accepted"] < report["inputs"], name  # the inputs reach both outcomes


def test_throughput_report_has_the_documented_keys() -> None:
    result = _bench("--json", "--frames", "3", "--repeats", "1")
    assert result["open_frames_per_s"] > 0 and result["secured_frames_per_s"] > 0
    assert result["open_frame_bytes"] == 8 + 19 and result["secured_frame_bytes"] == 11 + 19
