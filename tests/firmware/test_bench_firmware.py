"""bench/firmware.py: structure of its JSON, and its message when the cross compiler is missing.
Figures are measured by hand (the bench), never asserted against timing here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "firmware.py"


def _bench(env: dict | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--json"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_says_so_when_the_cross_compiler_is_missing(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH: no arm-none-eabi-gcc
    out = _bench(env)
    assert out["cross_compiler"] is None and "installs nothing" in out["error"]


def test_reports_flash_and_stack_of_the_model_and_lpp_builds():
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (Debian gcc-arm-none-eabi): nothing to measure")
    out = _bench()
    for name in ("model", "lpp"):
        r = out[name]
        assert r["flash_bytes"] == sum(r["sections"].get(s, 0) for s in (".text", ".rodata", ".data"))
        assert (
            r["stack_bytes"] > 0 and not r["recursion"] and r["deepest_path"][0].startswith("lgw_build_frame")
        )
    assert out["flash_bytes"] == out["model"]["flash_bytes"] > out["lpp"]["flash_bytes"]
