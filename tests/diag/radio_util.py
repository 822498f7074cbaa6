"""Helpers for the radio diagnostics tests: an emulator config file and in-process CLI runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def emulator_config(tmp_path: Path, radio: dict | None = None, **emulator: Any) -> str:
    """A config file with the emulator backend; ``radio`` and ``emulator`` override the defaults."""
    lines = ["[gateway]", 'id = "test-gw"', f"state_dir = {_toml(str(tmp_path / 'state'))}", "[radio]"]
    lines += [f"{k} = {_toml(v)}" for k, v in {"backend": "emulator", **(radio or {})}.items()]
    lines.append("[radio.emulator]")
    lines += [f"{k} = {_toml(v)}" for k, v in emulator.items()]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``lora-gw argv...`` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)
