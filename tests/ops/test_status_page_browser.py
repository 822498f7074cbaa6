"""The status page in a real browser: headless Chromium against ``lora-gw demo --web`` (a separate process,
running in real time until stopped) shows every node's name and values, filled in by the page's own script
from the JSON endpoints. Skipped only where Chromium is not installed (scripts/bootstrap installs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.service.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _nodes(port: int) -> list[dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/nodes", timeout=2) as r:
            return json.loads(r.read())["nodes"]
    except OSError:
        return []


def test_headless_chromium_shows_the_demo_nodes_and_values(broker, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (scripts/bootstrap installs it: apt-get install chromium)")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "demo",
            "--web",
            f"127.0.0.1:{port}",
            "--broker",
            broker.url,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len(_nodes(port)) < 3 and time.monotonic() < deadline:
            assert demo.poll() is None, demo.stderr.read() if demo.stderr else ""
            time.sleep(0.2)
        nodes = _nodes(port)
        assert len(nodes) == 3, nodes
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=1000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=60,
        ).stdout
        for n in nodes:
            row = dom.split(f'data-node="{n["name"]}"', 1)
            assert len(row) == 2, f"{n['name']} is not in the page"
            first = n["values"][0]
            assert f"{first['name']} " in row[1].split("</tr>", 1)[0]  # its first value, with the name
            assert first["unit"] in row[1].split("</tr>", 1)[0]
        assert "accepted" in dom  # the packet list filled in
        assert "<svg" in dom  # the RSSI/SNR charts drawn
        assert demo.poll() is None  # still running: no --seconds means until stopped
    finally:
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "summary:" in out
