"""``lora-gw diag ...``: one field check at a time (the radio side and the system side register here)."""

from __future__ import annotations

import argparse

from gateway.cli import diag_radio, diag_system


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diag",
        help="field diagnostics: chip, registers, air, link, broker, support bundle",
        description="Each check on its own. Exit 0 when everything checked is fine, 1 when a check"
        " failed, 2 for usage or configuration errors.",
    )
    dsub = p.add_subparsers(dest="diag_command", metavar="CHECK")
    dsub.required = True
    diag_radio.register(dsub)
    diag_system.register(dsub)
