"""scripts/install into a temporary root prefix (``--root``), as root: the user and groups from the
sysusers.d snippet, the venv with lora-gw, the config (never overwritten), tmpfiles.d, the unit with
ExecStart= in the venv (``systemd-analyze verify`` clean, exposure ≤ 1.5), idempotence and uninstall."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install"
VENV = "/opt/lora-gw/venv"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/install runs as root (sudo)")


def _install(root: Path, *args: str) -> subprocess.CompletedProcess:
    pip = str(Path(sys.executable).with_name("pip"))
    return subprocess.run(
        [str(SCRIPT), "--root", str(root), "--extra", "none", "--pip", pip, "--pip-args", "--no-deps", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _analyze(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed: sudo apt-get install systemd")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_install_into_a_root_prefix_then_again_then_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = _install(root)
    assert r.returncode == 0, r.stdout + r.stderr
    passwd = (root / "etc/passwd").read_text()
    group = (root / "etc/group").read_text()
    assert re.search(r"^lora-gw:x:\d+:\d+:[^:]*:/var/lib/lora-gw:/usr/sbin/nologin$", passwd, re.M)
    for g in ("spi", "gpio", "dialout"):
        assert re.search(rf"^{g}:x:\d+:(.*,)?lora-gw(,|$)", group, re.M), g
    gid = int(re.search(r"^lora-gw:x:(\d+):", group, re.M).group(1))
    cfg = root / "etc/lora-gw/gateway.toml"
    assert cfg.read_text() == (REPO / "config/gateway.toml").read_text()
    assert cfg.stat().st_gid == gid and oct(cfg.stat().st_mode & 0o777) == "0o640"
    state = root / "var/lib/lora-gw"
    assert state.is_dir() and oct(state.stat().st_mode & 0o777) == "0o700"
    exe = root / VENV.lstrip("/") / "bin/lora-gw"
    assert os.access(exe, os.X_OK) and exe.read_text().startswith(f"#!{VENV}/bin/python")
    assert os.readlink(root / "usr/local/bin/lora-gw") == f"{VENV}/bin/lora-gw"
    assert (root / "etc/sysusers.d/lora-gw.conf").is_file() and (
        root / "etc/tmpfiles.d/lora-gw.conf"
    ).is_file()

    unit = root / "etc/systemd/system/lora-gw.service"
    text = unit.read_text()
    assert f"\nExecStart={VENV}/bin/lora-gw run --config /etc/lora-gw/gateway.toml\n" in text
    # verify the unit as installed, with ExecStart= resolved inside the prefix (where the venv is)
    check = tmp_path / "lora-gw.service"
    check.write_text(text.replace(f"ExecStart={VENV}/", f"ExecStart={root}{VENV}/"))
    v = _analyze("verify", str(check))
    report = v.stdout + v.stderr
    assert v.returncode == 0 and not re.search(
        r"Unknown|[Ii]nvalid|[Ff]ailed|ignoring|not executable", report
    ), report
    s = _analyze("security", "--offline=true", "--no-pager", str(check))
    m = re.search(r"Overall exposure level for lora-gw\.service: (\d+\.\d+)", s.stdout)
    assert m and float(m.group(1)) <= 1.5, s.stdout[-1500:]

    cfg.write_text("# edited by the operator\n")
    (state / "gateway.db").write_bytes(b"state")
    again = _install(root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept the existing /etc/lora-gw/gateway.toml" in again.stdout
    assert "is up to date" in again.stdout  # nothing changed in the source: no reinstall
    assert cfg.read_text() == "# edited by the operator\n"
    assert (root / "etc/passwd").read_text().count("\nlora-gw:") + passwd.startswith("lora-gw:") == 1

    gone = subprocess.run([str(SCRIPT), "--root", str(root), "--uninstall"], capture_output=True, text=True)
    assert gone.returncode == 0, gone.stderr
    for p in (
        "etc/systemd/system/lora-gw.service",
        "etc/sysusers.d/lora-gw.conf",
        "etc/tmpfiles.d/lora-gw.conf",
        "usr/local/bin/lora-gw",
        "opt/lora-gw",
        "etc/lora-gw",
    ):
        assert not (root / p).exists() and not (root / p).is_symlink(), p
    assert (state / "gateway.db").read_bytes() == b"state"  # the state directory stays
    assert (state / "gateway.toml.uninstalled").read_text() == "# edited by the operator\n"
    purge = subprocess.run(
        [str(SCRIPT), "--root", str(root), "--uninstall", "--purge"], capture_output=True, text=True
    )
    assert purge.returncode == 0, purge.stderr
    assert not state.exists() and "lora-gw:" not in (root / "etc/passwd").read_text()


def test_bad_options_are_refused() -> None:
    r = subprocess.run([str(SCRIPT), "--extra", "arduino"], capture_output=True, text=True)
    assert r.returncode != 0 and "--extra: arduino is not pi, gpiod or none" in r.stderr
    r = subprocess.run([str(SCRIPT), "--purge"], capture_output=True, text=True)
    assert r.returncode != 0 and "--purge goes with --uninstall" in r.stderr
