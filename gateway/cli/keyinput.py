"""Node keys from standard input or a file, so that no key is typed on a command line.

A key in argv is readable by every local user (``ps``, ``/proc/PID/cmdline``) and stays in the shell's
history; standard input and a private file are not. The key's text is never repeated in a message.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from gateway.cli.notices import warn
from gateway.errors import GatewayError

STDIN = "-"
KEY_BYTES = 16
MAX_INPUT = 4096  # a key with comments or line breaks fits; /dev/zero or a wrong large file does not hang


class KeyInputError(GatewayError):
    """A key given to the CLI is not 32 hex digits, or its file cannot be read."""

    reason = "bad_key"


def parse_key(text: str, source: str) -> bytes:
    """32 hex digits (AES-128), any whitespace around or between them ignored."""
    digits = "".join(text.split()) if len(text) <= MAX_INPUT else ""
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyInputError(f"{source}: expected a key of 32 hex digits (AES-128); the input is not one")
    return key


def read_stdin_key(stream: TextIO | None = None) -> bytes:
    """``--key -``: the key from standard input (a pipe, a here-string, or typed and ended with Ctrl-D)."""
    stream = stream if stream is not None else sys.stdin
    if stream.isatty():
        print("node key (32 hex digits), then Enter and Ctrl-D:", file=sys.stderr)
    return parse_key(stream.read(MAX_INPUT + 1), "--key -")


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """``--key-file PATH``: the key from a file; a file that group or others can read gets a warning."""
    p = Path(path)
    source = f"--key-file {p}"
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        with p.open(encoding="ascii", errors="replace") as fh:
            text = fh.read(MAX_INPUT + 1)
    except FileNotFoundError:
        raise KeyInputError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise KeyInputError(f"{source}: is a directory, not a key file") from None
    except OSError as exc:
        raise KeyInputError(f"{source}: cannot read it ({exc.strerror})") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"{p} holds a node key and is readable by group or others (mode {mode:04o}); run chmod 600 {p}")
    return parse_key(text, source)
