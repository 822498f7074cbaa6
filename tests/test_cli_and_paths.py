"""The CLI entry point wires every sub-command; the state directory resolves as documented."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from gateway import paths
from gateway.cli import main as cli_main


def test_every_documented_command_is_registered() -> None:
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    # The README's command table: scripts and users depend on these names.
    assert {"demo", "run", "config", "airtime", "nodes", "decode", "model"} <= set(sub.choices)


def test_console_script_runs_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout


def test_state_dir_precedence(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_GW_STATE_DIR", str(tmp_path / "env"))
    assert paths.state_dir() == tmp_path / "env"
    assert paths.state_dir(tmp_path / "explicit") == tmp_path / "explicit"
    created = paths.state_dir(tmp_path / "new" / "deep")
    assert created.is_dir()
    assert stat.S_IMODE(os.stat(created).st_mode) & 0o077 == 0
    monkeypatch.delenv("LORA_GW_STATE_DIR")
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'sd'}:{tmp_path / 'other'}")
    assert paths.state_dir() == tmp_path / "sd"
    assert paths.db_path(tmp_path / "x") == tmp_path / "x" / "gateway.db"
