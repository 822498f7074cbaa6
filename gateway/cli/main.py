"""Entry point of ``lora-gw``: each sub-command lives in its own module with ``register()``.

Global options (``--state-dir``, ``--config``, ``-v``) are accepted before or after the sub-command, by
every sub-command (:func:`_add_globals`); a command that uses the state directory and gets ``--config``
uses the service's ``gateway.state_dir`` from it, so every command works on the database the service
uses (:func:`resolve_state`)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from gateway import __version__, paths
from gateway.cli.examples import add_examples
from gateway.cli.notices import warn
from gateway.errors import ConfigError, GatewayError

# Commands that write the state directory; run by root on a service user's directory, they continue as
# that user (see gateway.paths.adopt_state_owner).
STATE_COMMANDS = frozenset({"nodes", "model", "state", "outbox", "history"})
# Commands that use the state directory: they warn when it (or a database file in it they cannot close
# themselves) is open to group or others. The service refuses to start instead (gateway.service.app).
STATE_READERS = STATE_COMMANDS | {"decode"}
# Commands that read ``--config`` themselves (the service, diagnostics) rather than only its state_dir.
OWN_CONFIG = frozenset({"run", "doctor", "diag", "config", "demo"})

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
OPTIONAL_MODULES = ("gateway.cli.history",)  # registered when present (issue 18)

STATE_DIR_HELP = (
    "gateway state directory (default: gateway.state_dir of --config, else $LORA_GW_STATE_DIR,"
    " /var/lib/lora-gw as root, ~/.local/state/lora-gw otherwise)"
)
CONFIG_HELP = (
    "the service's TOML config, e.g. /etc/lora-gw/gateway.toml; state commands then use its"
    " gateway.state_dir (default: none)"
)
VERBOSE_HELP = "more log output: -v info, -vv debug (default: warnings only)"
EPILOG = """examples:
  lora-gw config check /etc/lora-gw/gateway.toml
  sudo lora-gw nodes list --config /etc/lora-gw/gateway.toml"""


def _add_globals(parser: argparse.ArgumentParser, top: bool) -> None:
    """The global options; on sub-commands with no default of their own, so that a value given before the
    sub-command is not overwritten by the sub-command's default."""
    default = None if top else argparse.SUPPRESS
    have = parser._option_string_actions
    if "--state-dir" not in have:
        parser.add_argument("--state-dir", default=default, metavar="DIR", help=STATE_DIR_HELP)
    if "--config" not in have:
        parser.add_argument("--config", default=default, metavar="PATH", help=CONFIG_HELP)
    if "-v" not in have:
        verbose_default = 0 if top else argparse.SUPPRESS
        parser.add_argument("-v", "--verbose", action="count", default=verbose_default, help=VERBOSE_HELP)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                out.append(child)
                out.extend(_subparsers(child))
    return out


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every sub-command's, at any depth (for the help-text tests too)."""
    return [parser, *_subparsers(parser)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lora-gw",
        description="LoRa telemetry gateway for the Raspberry Pi",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lora-gw {__version__}")
    _add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name in OPTIONAL_MODULES:
        if name in COMMAND_MODULES:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports does not: say so
                raise
            continue
        module.register(sub)
    for child in _subparsers(parser):
        for action in child._actions:  # a sub-command's own --config/--state-dir must not hide a global one
            if action.dest in ("config", "state_dir") and action.default is None:
                action.default = argparse.SUPPRESS
        _add_globals(child, top=False)
        add_examples(child)
    return parser


def warn_exposed(explicit_state_dir: str | None) -> None:
    """Tell the operator when the node keys in the state directory are readable by group or others."""
    found = paths.exposed(paths.state_dir(explicit_state_dir, create=False))
    if found:
        warn(paths.exposure_message(found))


def resolve_state(args: argparse.Namespace) -> None:
    """``--config`` without ``--state-dir``: the service's ``gateway.state_dir`` (relative to the file)."""
    if args.state_dir or not args.config or args.command in OWN_CONFIG:
        return
    from gateway.service.config import load_config, state_dir_of

    args.state_dir = state_dir_of(load_config(args.config))


def _check_state_dir(explicit: str | None) -> None:
    """A state directory that is a file (or cannot be created) is one line, before anything opens it."""
    from gateway.service.config import dir_problem

    problem = dir_problem(paths.state_dir(explicit, create=False), "state directory")
    if problem:
        raise ConfigError(problem)


def _tolerant_output() -> None:
    """A terminal that cannot show a character gets an escape, not a UnicodeEncodeError traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def os_error_message(exc: OSError) -> str:
    """An ordinary filesystem mistake as one line: what, which path, why."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.filename2:
        where += f" -> {exc.filename2}"
    return f"{where.strip() or 'file system'}: {exc.strerror or exc}"


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # like lora-fw: the overview, not a usage error
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:  # only global options: the overview, as lora-fw does
        parser.print_help()
        return 0
    for name in ("state_dir", "config"):
        if not hasattr(args, name):
            setattr(args, name, None)
    level = logging.WARNING - 10 * getattr(args, "verbose", 0)
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in STATE_READERS:
            resolve_state(args)
            _check_state_dir(args.state_dir)
        if args.command in STATE_COMMANDS and getattr(args, "adopt_owner", True):
            uid = paths.adopt_state_owner(args.state_dir)
            if uid is not None:
                logging.getLogger(__name__).info("state directory belongs to uid %d: continuing as it", uid)
        if args.command in STATE_READERS:
            warn_exposed(args.state_dir)
            from gateway.cli.service_info import warn_mismatch

            warn_mismatch(args.state_dir)
        return int(args.func(args) or 0)
    except GatewayError as exc:
        print(f"lora-gw: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head, less, ...: stop quietly
        sys.stderr.close()
        return 0
    except OSError as exc:  # a filesystem mistake (a path that is a file, a directory, not writable, ...)
        print(f"lora-gw: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"lora-gw: {ConfigError(f'a file is not valid UTF-8 ({exc.reason})').message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
