"""Options every ``lora-gw doctor`` / ``lora-gw diag`` command takes."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=None,
        help="gateway config (default: /etc/lora-gw/gateway.toml, else the example config)",
    )
    p.add_argument(
        "--emulate", action="store_true", help='shorthand for [radio] backend = "emulator" (default scenario)'
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
