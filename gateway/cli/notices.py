"""Warnings the CLI gives the operator: one line on standard error, beside ``lora-gw: <error>``."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    print(f"lora-gw: warning: {message}", file=sys.stderr)
