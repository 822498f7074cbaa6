"""systemd/lora-gw.service as systemd itself reads it: every setting known, exposure at most 1.3, and the
example config's log file inside the unit's LogsDirectory= (the only place the hardened unit can write logs).

Tests FAIL (not skip) without systemd-analyze: ``sudo apt-get install systemd`` (scripts/bootstrap does).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "lora-gw.service"
MAX_EXPOSURE = 1.3


def _analyze(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed: sudo apt-get install systemd")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_exposure_is_at_most_1_3():
    r = _analyze("security", "--offline=true", "--no-pager", str(UNIT))
    m = re.search(r"Overall exposure level for lora-gw\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


def test_verify_knows_every_setting(tmp_path):
    """ExecStart= points at this checkout's lora-gw, so that only real problems are left to report."""
    exe = Path(sys.executable).with_name("lora-gw")
    assert exe.is_file(), f"{exe} missing: pip install -e . (scripts/bootstrap)"
    unit = tmp_path / "lora-gw.service"
    text = UNIT.read_text()
    assert text.count("ExecStart=/opt/lora-gw/.venv/bin/lora-gw ") == 1
    unit.write_text(text.replace("ExecStart=/opt/lora-gw/.venv/bin/lora-gw ", f"ExecStart={exe} "))
    r = _analyze("verify", str(unit))
    report = r.stdout + r.stderr
    assert r.returncode == 0, report
    assert not re.search(r"Unknown|[Ii]nvalid|[Ff]ailed|ignoring|not executable", report), report


def test_verify_reports_an_unknown_setting(tmp_path):
    """Control for the test above: a misspelt setting does show in the report it reads."""
    unit = tmp_path / "lora-gw.service"
    exe = Path(sys.executable).with_name("lora-gw")
    text = UNIT.read_text().replace("ExecStart=/opt/lora-gw/.venv/bin/lora-gw ", f"ExecStart={exe} ")
    unit.write_text(text.replace("PrivateIPC=yes", "PrivateIPCC=yes"))
    r = _analyze("verify", str(unit))
    assert "Unknown key 'PrivateIPCC'" in r.stdout + r.stderr


def test_hardening_keeps_what_the_service_needs():
    s = _settings(UNIT.read_text())
    assert s["LogsDirectory"] == ["lora-gw"] and s["StateDirectory"] == ["lora-gw"]
    assert s["PrivateIPC"] == ["yes"]
    assert s["IPAddressDeny"] == ["any"] and s["IPAddressAllow"] == ["localhost"]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]  # broker, sd_notify
    assert {"/dev/spidev0.0 rw", "/dev/gpiochip0 rw", "/dev/gpiomem rw"} <= set(s["DeviceAllow"])
    assert "ProcSubset" not in s  # RPi.GPIO reads /proc/device-tree or /proc/cpuinfo at import
    assert "PrivateDevices" not in s and "PrivateNetwork" not in s


def test_example_log_file_is_inside_the_logs_directory():
    text = (REPO / "config" / "gateway.toml").read_text()
    m = re.search(r'^# file = "([^"]+)"$', text, re.M)
    assert m, "the example documents logging.file"
    tomllib.loads(m.group(0).lstrip("# "))  # the commented line is valid TOML once uncommented
    logs = _settings(UNIT.read_text())["LogsDirectory"][0]
    assert Path(m.group(1)).parent == Path("/var/log") / logs
