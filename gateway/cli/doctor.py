"""``lora-gw doctor``: the whole field checklist (see gateway.diag.doctor)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from gateway.cli.diag_common import add_common

if TYPE_CHECKING:
    from gateway.diag.report import Report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check everything: config, SPI, chip, broker, outbox, clock, models, service",
        description="Runs every check and prints a checklist; each failure with its cause and fix. Exit 0"
        " when nothing failed, 1 when a check failed, 2 when the configuration does not load.",
    )
    add_common(p)
    p.set_defaults(func=cmd_doctor)


def print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(report.to_json())
    else:
        print(report.render(sys.stdout))


def cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.diag import doctor

    result = doctor.run(args.config, args.emulate, getattr(args, "state_dir", None))
    print_report(result.report, args.json)
    return result.exit_code
