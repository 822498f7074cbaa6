"""Thirty-odd malformed configurations and filesystem mistakes: each is one line on stderr, exit 2, no
traceback, for ``config check``, ``run`` and a state command given ``--config``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cli import main as cli


def _toml(tmp: Path, text: str | bytes) -> Path:
    p = tmp / "gateway.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _file(tmp: Path) -> Path:
    f = tmp / "plain-file"
    f.write_text("x")
    return f


CASES = {
    # (name): builder(tmp) -> (argv, expected text in the message)
    "config is a directory": lambda t: (["config", "check", str(t)], "is a directory"),
    "run config is a directory": lambda t: (["run", "--config", str(t)], "is a directory"),
    "config missing": lambda t: (["config", "check", str(t / "nope.toml")], "does not exist"),
    "config under a file": lambda t: (["config", "check", str(_file(t) / "g.toml")], "not a directory"),
    "invalid utf-8": lambda t: (["config", "check", str(_toml(t, b'[gateway]\nid = "\xff"\n'))], "UTF-8"),
    "run invalid utf-8": lambda t: (["run", "--config", str(_toml(t, b"# \xfe\n"))], "UTF-8"),
    "nodes invalid utf-8": lambda t: (["nodes", "list", "--config", str(_toml(t, b"\xc3\x28"))], "UTF-8"),
    "invalid toml": lambda t: (["config", "check", str(_toml(t, "[gateway\n"))], "not valid TOML"),
    "log dir missing": lambda t: (
        ["config", "check", str(_toml(t, f'[logging]\nfile = "{t}/none/gw.log"\n'))],
        "does not exist",
    ),
    "run log dir missing": lambda t: (
        ["run", "--config", str(_toml(t, f'[logging]\nfile = "{t}/none/gw.log"\n'))],
        "does not exist",
    ),
    "log file is a directory": lambda t: (
        ["config", "check", str(_toml(t, f'[logging]\nfile = "{t}"\n'))],
        "is a directory",
    ),
    "log under a file": lambda t: (
        ["config", "check", str(_toml(t, f'[logging]\nfile = "{_file(t)}/gw.log"\n'))],
        "not a directory",
    ),
    "state_dir is a file": lambda t: (
        ["config", "check", str(_toml(t, f'[gateway]\nstate_dir = "{_file(t)}"\n'))],
        "is a file, not a directory",
    ),
    "run state_dir is a file": lambda t: (
        ["run", "--config", str(_toml(t, f'[gateway]\nstate_dir = "{_file(t)}"\n'))],
        "is a file, not a directory",
    ),
    "nodes state_dir is a file": lambda t: (
        ["nodes", "list", "--config", str(_toml(t, f'[gateway]\nstate_dir = "{_file(t)}"\n'))],
        "is a file, not a directory",
    ),
    "state_dir under a file": lambda t: (
        ["config", "check", str(_toml(t, f'[gateway]\nstate_dir = "{_file(t)}/s"\n'))],
        "cannot be created",
    ),
    "run state_dir under a file": lambda t: (
        ["run", "--config", str(_toml(t, f'[gateway]\nstate_dir = "{_file(t)}/s/t"\n'))],
        "cannot be created",
    ),
    "--state-dir is a file": lambda t: (["nodes", "list", "--state-dir", str(_file(t))], "is a file, not a"),
    "run --state-dir is a file": lambda t: (
        ["run", "--config", str(_toml(t, "")), "--state-dir", str(_file(t))],
        "is a file, not a directory",
    ),
    "backup_dir is a file": lambda t: (
        ["config", "check", str(_toml(t, f'[state]\nbackup_dir = "{_file(t)}"\n'))],
        "state.backup_dir",
    ),
    "unknown state key": lambda t: (
        ["config", "check", str(_toml(t, "[state]\nkeep = 3\n"))],
        "unknown option",
    ),
    "passphrase file missing": lambda t: (
        ["config", "check", str(_toml(t, f'[state]\nbackup_passphrase_file = "{t}/nope"\n'))],
        "state.backup_passphrase_file",
    ),
    "passphrase file open to others": lambda t: (
        ["config", "check", str(_toml(t, f'[state]\nbackup_passphrase_file = "{_file(t)}"\n'))],
        "chmod 600",
    ),
    "backup interval out of range": lambda t: (
        ["config", "check", str(_toml(t, "[state]\nbackup_interval_h = 0\n"))],
        "outside",
    ),
    "secrets file missing": lambda t: (
        ["config", "check", str(_toml(t, '[gateway]\nsecrets_file = "nope.toml"\n'))],
        "does not exist",
    ),
    "secrets file is a directory": lambda t: (
        ["config", "check", str(_toml(t, f'[gateway]\nsecrets_file = "{t}"\n'))],
        "is a directory",
    ),
    "sf out of range": lambda t: (["config", "check", str(_toml(t, "[radio]\nsf = 13\n"))], "radio.sf"),
    "mqtt url bad": lambda t: (["config", "check", str(_toml(t, '[mqtt]\nurl = "http://x"\n'))], "mqtt.url"),
    "backup into a missing directory": lambda t: (
        ["state", "backup", str(t / "no" / "b.lgwbak"), "--state-dir", str(t)],
        "does not exist",
    ),
    "restore a directory": lambda t: (["state", "restore", str(t), "--state-dir", str(t / "s")], "directory"),
    "restore a non-backup": lambda t: (
        ["state", "restore", str(_file(t)), "--state-dir", str(t / "s")],
        "not a lora-gw backup",
    ),
    "run without --config": lambda t: (["run"], "--config PATH is required"),
}


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_line_exit_2_no_traceback(name, tmp_path, capsys, monkeypatch):
    for var in [v for v in os.environ if v.startswith("LORA_GW_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LORA_GW_UNIT_FILE", str(tmp_path / "no-unit"))
    argv, expected = CASES[name](tmp_path)
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and out.err.count("\n") == 1, out.err
    assert out.err.startswith("lora-gw: ") and expected in out.err, out.err
