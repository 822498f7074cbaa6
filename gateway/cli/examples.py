"""The examples every ``lora-gw`` command's ``--help`` ends with, for the commands that do not give their
own epilog, and a help formatter that prints them as written (descriptions are still wrapped)."""

from __future__ import annotations

import argparse

EXAMPLES = {
    "lora-gw airtime": (
        "lora-gw airtime --sf 9 --bw 125 --payload 24",
        "lora-gw airtime --sf 12 --bw-hz 125000 --payload 51 --json",
    ),
    "lora-gw demo": ("lora-gw demo", "lora-gw demo --nodes 5 --seconds 30"),
    "lora-gw nodes list": (
        "lora-gw nodes list --config /etc/lora-gw/gateway.toml",
        "lora-gw nodes list --json",
    ),
    "lora-gw nodes show": ("lora-gw nodes show garden", "lora-gw nodes show 0x1234 --json"),
    "lora-gw nodes rename": ("lora-gw nodes rename 0x1234 greenhouse",),
    "lora-gw nodes remove": ("lora-gw nodes remove garden",),
    "lora-gw nodes reset-counter": (
        "lora-gw nodes reset-counter garden --new-epoch",
        "lora-gw nodes reset-counter 0x1234 --next 500",
    ),
    "lora-gw outbox list": (
        "lora-gw outbox list --config /etc/lora-gw/gateway.toml",
        "lora-gw outbox list --json",
    ),
    "lora-gw outbox retry": ("lora-gw outbox retry 42", "lora-gw outbox retry --all"),
    "lora-gw outbox drop": ("lora-gw outbox drop 42",),
    "lora-gw decode": (
        "lora-gw decode 0167011002680e --codec lpp",
        "lora-gw decode 0167011002680e --config /etc/lora-gw/gateway.toml --json",
    ),
    "lora-gw diag chip": ("sudo systemctl stop lora-gw && lora-gw diag chip", "lora-gw diag chip --emulate"),
    "lora-gw diag regs": ("lora-gw diag regs", "lora-gw diag regs --json"),
    "lora-gw diag scan": (
        "lora-gw diag scan --from 863 --to 870",
        "lora-gw diag scan --from 868 --to 869 --emulate",
    ),
    "lora-gw diag monitor": ("lora-gw diag monitor", "lora-gw diag monitor --emulate"),
    "lora-gw diag tx": ("lora-gw diag tx --emulate",),
    "lora-gw diag link": ("lora-gw diag link", "lora-gw diag link --emulate --json"),
    "lora-gw diag mqtt": ("lora-gw diag mqtt --config /etc/lora-gw/gateway.toml",),
    "lora-gw diag bundle": ("sudo lora-gw diag bundle --config /etc/lora-gw/gateway.toml",),
    "lora-gw doctor": ("sudo lora-gw doctor", "lora-gw doctor --emulate --json"),
}


class ExamplesFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual, but keeps an epilog that starts with "example" line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` its examples if it has none; keep an epilog it has (and its formatter)."""
    lines = EXAMPLES.get(parser.prog)
    if lines and not parser.epilog:
        parser.epilog = "example:\n  " + lines[0] if len(lines) == 1 else "examples:\n  " + "\n  ".join(lines)
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = ExamplesFormatter
