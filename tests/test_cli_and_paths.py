"""The CLI entry point wires every sub-command; the state directory resolves as documented."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

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


def test_root_continues_as_the_owner_of_the_state_directory() -> None:
    """`sudo lora-gw nodes add` on the service's directory must leave files the service can open."""
    import shutil
    import tempfile

    from gateway.frames import Node, NodeRegistry

    state = Path(tempfile.mkdtemp(prefix="lora-gw-owner-"))  # under /tmp: traversable by any user
    try:
        if os.geteuid() != 0:
            assert paths.adopt_state_owner(state) is None  # nothing to adopt without root
            return
        os.chown(state, 65534, 65534)  # the service user (here: nobody)
        pid = os.fork()
        if pid == 0:  # the child plays the CLI run by root
            code = 1
            try:
                code = 0 if paths.adopt_state_owner(state) == 65534 and os.geteuid() == 65534 else 3
                if code == 0:
                    reg = NodeRegistry(paths.db_path(state))
                    reg.add(Node(node_id=5, name="five"))
                    reg.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        db = paths.db_path(state)
        assert db.stat().st_uid == 65534 and db.stat().st_gid == 65534
        root_dir = Path(tempfile.mkdtemp(prefix="lora-gw-root-"))
        try:
            assert paths.adopt_state_owner(root_dir) is None  # root's own directory: stays root
            assert os.geteuid() == 0
        finally:
            shutil.rmtree(root_dir)
    finally:
        shutil.rmtree(state, ignore_errors=True)
