"""``lora-gw diag`` sub-commands (diag_radio): registered into the diag parser by gateway.cli.diag."""

from __future__ import annotations

import argparse


def register(dsub: argparse._SubParsersAction) -> None:
    """Adds this module's diag sub-commands (under construction)."""
