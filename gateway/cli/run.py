"""``lora-gw run --config PATH``: the long-running gateway service (systemd runs this)."""

from __future__ import annotations

import argparse

from gateway.cli.examples import ExamplesFormatter
from gateway.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the gateway service: radio → frames → durable outbox → MQTT",
        description=(
            "Receives with the SX1276 (or the emulator, per [radio] backend), checks and decodes frames, "
            "stores each accepted frame durably and publishes it to MQTT. Stops cleanly on SIGTERM/SIGINT."
        ),
        epilog="examples:\n"
        "  lora-gw run --config /etc/lora-gw/gateway.toml\n"
        "  lora-gw run --config config/gateway.toml --state-dir /tmp/gw-state -v   # a trial run",
        formatter_class=ExamplesFormatter,
    )
    p.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="the TOML configuration (required), e.g. /etc/lora-gw/gateway.toml",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.service.app import Gateway, configure_logging
    from gateway.service.config import load_config

    if not getattr(args, "config", None):
        raise ConfigError("run: --config PATH is required (e.g. --config /etc/lora-gw/gateway.toml)")
    cfg = load_config(args.config)
    configure_logging(cfg, getattr(args, "verbose", 0))
    gw = Gateway(cfg, getattr(args, "state_dir", None))
    gw.install_signal_handlers()
    gw.run()
    return 0
