"""The node keys in the state directory: the CLI warns and the service refuses to start when the directory,
or a database file in it that the process cannot close itself, is open to group or others."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import paths
from gateway.cli import main as cli
from gateway.paths import StateExposedError

REPO = Path(__file__).resolve().parents[1]


def make_state(tmp_path: Path, mode: int = 0o700) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    return state


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def someone_else(monkeypatch) -> None:
    """From here on this process runs as another user than the one owning the test's files."""
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 4242)


def test_private_state_is_not_exposed(tmp_path):
    state = make_state(tmp_path)
    for name in ("gateway.db", "gateway.db-wal"):
        (state / name).write_bytes(b"x")
        (state / name).chmod(0o600)
    assert paths.exposed(state) == [] and paths.exposed(state, own_files=True) == []
    paths.check_private(state)
    assert paths.exposed(tmp_path / "missing") == []


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o705, 0o720, 0o1777])
def test_a_directory_open_to_group_or_others_is_exposed(tmp_path, mode):
    state = make_state(tmp_path, mode)
    (found,) = paths.exposed(state)
    assert (found.path, found.mode, found.is_dir, found.fix) == (state, mode, True, f"chmod 700 {state}")
    with pytest.raises(StateExposedError) as exc:
        paths.check_private(state)
    assert exc.value.message == (
        f"state: {state} (mode {mode:04o}) is readable or writable by group or others and holds node keys;"
        f" run chmod 700 {state}"
    )


def test_traversal_only_is_not_exposure(tmp_path):
    assert paths.exposed(make_state(tmp_path, 0o711)) == []


def test_own_database_files_are_left_to_statedb_other_users_are_reported(tmp_path, monkeypatch):
    state = make_state(tmp_path)
    names = ("gateway.db", "gateway.db-wal", "gateway.db.lost-20260101T000000Z", "gateway.db.created", "x.db")
    for name in names:
        (state / name).write_bytes(b"x")
        (state / name).chmod(0o644)
    keyed = [state / n for n in names[:3]]
    # mine: gateway.statedb closes the database and its WAL when it opens them, but not a set-aside copy
    assert [e.path for e in paths.exposed(state)] == [state / names[2]]
    assert sorted(e.path for e in paths.exposed(state, own_files=True)) == sorted(keyed)
    someone_else(monkeypatch)
    found = paths.exposed(state)
    assert sorted(e.path for e in found) == sorted(keyed)
    assert all(e.fix == f"sudo chmod 600 {e.path}" for e in found)
    with pytest.raises(StateExposedError, match=r"run sudo chmod 600 .*gateway\.db && sudo chmod 600"):
        paths.check_private(state)


# --- the CLI warns ---


def cli_run(state: Path, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--state-dir", str(state), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_warns_about_an_open_state_directory(tmp_path, capsys):
    state = make_state(tmp_path)
    assert cli_run(state, capsys, "nodes", "add", "5", "--generate-key")[0] == 0
    state.chmod(0o755)
    for argv in (["nodes", "list"], ["state", "init"], ["model", "list"]):
        code, _, err = cli_run(state, capsys, *argv)
        assert code == 0, err
        assert err == (
            f"lora-gw: warning: state: {state} (mode 0755) is readable or writable by group or others"
            f" and holds node keys; run chmod 700 {state}\n"
        )
    state.chmod(0o700)
    assert cli_run(state, capsys, "nodes", "list")[2] == ""


def test_cli_closes_its_own_database_and_says_so(tmp_path, capsys, caplog):
    state = make_state(tmp_path)
    cli_run(state, capsys, "nodes", "add", "5", "--generate-key")
    db = state / "gateway.db"
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="gateway.statedb"):
        code, _, err = cli_run(state, capsys, "nodes", "list")
    assert code == 0 and err == "" and mode_of(db) == 0o600  # the CLI's own warning would repeat it
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith(f"{db} was open to group or others (mode 0644) and holds node keys") for m in warned
    )
    for f in state.glob("gateway.db*"):
        assert mode_of(f) & 0o077 == 0, f


def test_cli_warns_about_another_users_database(tmp_path, capsys, monkeypatch):
    state = make_state(tmp_path)
    cli_run(state, capsys, "nodes", "add", "5", "--generate-key")
    db = state / "gateway.db"
    db.chmod(0o640)
    someone_else(monkeypatch)
    code, _, err = cli_run(state, capsys, "nodes", "list")
    assert code == 0 and mode_of(db) == 0o640  # not ours to change
    assert err.startswith(f"lora-gw: warning: state: {db} (mode 0640) is readable or writable by group")
    assert err.endswith(f"; run sudo chmod 600 {db}\n")


# --- the service refuses ---


def service_config(tmp_path: Path, state: Path) -> Path:
    p = tmp_path / "gateway.toml"
    p.write_text(
        f'[gateway]\nid = "gwp"\nstate_dir = "{state}"\n[radio]\nbackend = "emulator"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:9"\n'
    )
    return p


def test_lora_gw_run_refuses_an_open_state_directory(tmp_path):
    state = make_state(tmp_path, 0o755)
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(service_config(tmp_path, state))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr == (
        f"lora-gw: state: {state} (mode 0755) is readable or writable by group or others and holds node"
        f" keys; run chmod 700 {state}\n"
    )
    assert list(state.iterdir()) == []  # refused before anything was opened or created


def test_the_service_refuses_another_users_open_database(tmp_path, monkeypatch):
    from gateway.service.app import Gateway
    from gateway.service.config import load_config

    state = make_state(tmp_path)
    wal = state / "gateway.db-wal"
    wal.write_bytes(b"")
    wal.chmod(0o644)
    cfg = load_config(service_config(tmp_path, state), env={})
    someone_else(monkeypatch)
    with pytest.raises(StateExposedError) as exc:
        Gateway(cfg)
    assert exc.value.message.endswith(f"run sudo chmod 600 {wal}")
    assert not (state / "gateway.db").exists()
