"""Entry point of ``lora-gw``: each sub-command lives in its own module with ``register()``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from gateway import __version__, paths
from gateway.cli.notices import warn
from gateway.errors import GatewayError

# Commands that write the state directory; run by root on a service user's directory, they continue as
# that user (see gateway.paths.adopt_state_owner).
STATE_COMMANDS = frozenset({"nodes", "model", "state", "outbox"})
# Commands that use the state directory: they warn when it (or a database file in it they cannot close
# themselves) is open to group or others. The service refuses to start instead (gateway.service.app).
STATE_READERS = STATE_COMMANDS | {"decode"}

# Each module defines register(subparsers) and sets a ``func(args) -> int`` default.
COMMAND_MODULES = (
    "gateway.cli.airtime",
    "gateway.cli.demo",
    "gateway.cli.config",
    "gateway.cli.run",
    "gateway.cli.nodes",
    "gateway.cli.outbox",
    "gateway.cli.decode",
    "gateway.cli.model",
    "gateway.cli.state",
    "gateway.cli.diag",
    "gateway.cli.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lora-gw", description="LoRa telemetry gateway for the Raspberry Pi"
    )
    parser.add_argument("--version", action="version", version=f"lora-gw {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="gateway state directory (default: $LORA_GW_STATE_DIR, /var/lib/lora-gw as root, "
        "else ~/.local/state/lora-gw)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def warn_exposed(explicit_state_dir: str | None) -> None:
    """Tell the operator when the node keys in the state directory are readable by group or others."""
    found = paths.exposed(paths.state_dir(explicit_state_dir, create=False))
    if found:
        warn(paths.exposure_message(found))


def _tolerant_output() -> None:
    """A terminal that cannot show a character gets an escape, not a UnicodeEncodeError traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in STATE_COMMANDS:
            uid = paths.adopt_state_owner(args.state_dir)
            if uid is not None:
                logging.getLogger(__name__).info("state directory belongs to uid %d: continuing as it", uid)
        if args.command in STATE_READERS:
            warn_exposed(args.state_dir)
        return int(args.func(args) or 0)
    except GatewayError as exc:
        print(f"lora-gw: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head, less, ...: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
