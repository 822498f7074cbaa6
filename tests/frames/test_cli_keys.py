"""``lora-gw nodes add --key -`` and ``--key-file PATH``: a node key never has to be on a command line."""

from __future__ import annotations

import io
import re

import pytest

from gateway.cli import main as cli
from gateway.frames import NodeRegistry

KEY_HEX = "000102030405060708090a0b0c0d0e0f"


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    state = tmp_path / "state"

    def _run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(["--state-dir", str(state), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    _run.state = state  # type: ignore[attr-defined]
    return _run


def stored_key(state, node_id: int) -> bytes | None:
    with NodeRegistry.open(state) as registry:
        return registry.get(node_id).key


def test_key_from_standard_input_whitespace_ignored(run) -> None:
    grouped = "  0001 0203 0405 0607\n08090A0B0C0D0E0F\n\n"
    code, out, err = run("nodes", "add", "5", "--key", "-", stdin=grouped)
    assert code == 0 and err == ""
    assert stored_key(run.state, 5) == bytes.fromhex(KEY_HEX)
    assert KEY_HEX not in out.lower()


@pytest.mark.parametrize("text", ["", "abcd", KEY_HEX + "00", "zz" * 16, KEY_HEX[:-1] + "g", "x" * 100_000])
def test_malformed_key_on_standard_input_is_one_line_that_does_not_echo_it(run, text) -> None:
    code, out, err = run("nodes", "add", "5", "--key", "-", stdin=text)
    assert code == 2 and out == ""
    assert err.startswith("lora-gw: --key -: expected a key of 32 hex digits") and err.count("\n") == 1
    if text:
        assert text[:8] not in err
    assert not (run.state / "gateway.db").exists() or stored_key(run.state, 5) is None


def test_key_file_private_no_warning(run, tmp_path) -> None:
    f = tmp_path / "garden.key"
    f.write_text(KEY_HEX.upper() + "\n")
    f.chmod(0o600)
    code, out, err = run("nodes", "add", "7", "--key-file", str(f))
    assert code == 0 and err == "" and KEY_HEX not in out.lower()
    assert stored_key(run.state, 7) == bytes.fromhex(KEY_HEX)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_readable_by_group_or_others_is_used_with_a_warning(run, tmp_path, mode) -> None:
    f = tmp_path / "garden.key"
    f.write_text(KEY_HEX)
    f.chmod(mode)
    code, _, err = run("nodes", "add", "7", "--key-file", str(f))
    assert code == 0 and stored_key(run.state, 7) == bytes.fromhex(KEY_HEX)
    assert err == (
        f"lora-gw: warning: {f} holds a node key and is readable by group or others (mode {mode:04o});"
        f" run chmod 600 {f}\n"
    )


def test_key_file_errors_are_one_line(run, tmp_path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key: " + KEY_HEX[:20])
    bad.chmod(0o600)
    for path, expected in [
        (bad, f"lora-gw: --key-file {bad}: expected a key of 32 hex digits"),
        (tmp_path / "missing.key", f"lora-gw: --key-file {tmp_path / 'missing.key'}: no such file"),
        (tmp_path, f"lora-gw: --key-file {tmp_path}: is a directory"),
    ]:
        code, _, err = run("nodes", "add", "7", "--key-file", str(path))
        assert code == 2 and err.startswith(expected) and err.count("\n") == 1, err
        assert KEY_HEX[:20] not in err


def test_key_sources_are_exclusive(run, tmp_path) -> None:
    with pytest.raises(SystemExit):
        run("nodes", "add", "7", "--key", "-", "--key-file", str(tmp_path / "k"), stdin=KEY_HEX)
    with pytest.raises(SystemExit):
        run("nodes", "add", "7", "--generate-key", "--key-file", str(tmp_path / "k"))


def test_key_on_the_command_line_still_works_but_warns(run) -> None:
    code, out, err = run("nodes", "add", "8", "--key", KEY_HEX)
    assert code == 0 and stored_key(run.state, 8) == bytes.fromhex(KEY_HEX)
    assert err.startswith("lora-gw: warning: a key on the command line is visible") and "--key-file" in err
    assert KEY_HEX not in out + err


def test_help_recommends_stdin_and_files_never_a_key_in_argv(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["nodes", "add", "--help"])
    text = capsys.readouterr().out
    assert "--key-file" in text and "--key -" in text
    assert not re.search(r"--key\s+(HEX|[0-9a-fA-F]{8,})", text), text
