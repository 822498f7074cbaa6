"""``lora-gw demo``: emulated SX1276 + simulated nodes → the real pipeline → a real broker."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.cli.notices import warn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="hardware-free demo: emulated radio and sensor nodes through the real pipeline to MQTT",
        description=(
            "Runs N simulated sensor nodes and an emulated SX1276 on a virtual air, through the real frame "
            "checks, codec, durable outbox and MQTT publisher. Without --broker it uses a broker on "
            "127.0.0.1:1883, or starts a private Mosquitto."
        ),
    )
    p.add_argument("--nodes", type=int, default=3, help="number of simulated nodes (default 3)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="how long to run, in simulated seconds (default 40; with --web: until stopped, in real time)",
    )
    p.add_argument(
        "--broker",
        default=None,
        metavar="URL",
        help="mqtt://[user@]host[:port] or mqtts://…; the user name and password are taken from"
        " $LORA_GW_MQTT_USERNAME and $LORA_GW_MQTT_PASSWORD when set, as for lora-gw run (default:"
        " 127.0.0.1:1883, else a private Mosquitto)",
    )
    p.add_argument(
        "--confirmed", action="store_true", help="nodes request an acknowledgement of every uplink"
    )
    p.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    p.add_argument(
        "--web",
        default=None,
        metavar="HOST:PORT",
        help="serve the status page, /api/* and /metrics there, loopback (default: off; e.g. 127.0.0.1:9108)",
    )
    p.set_defaults(func=run)


def _print_reading(msg: dict[str, Any]) -> None:
    values = ", ".join(
        f"{v.get('name') or v.get('type')}={v['value']}{(' ' + v['unit']) if v.get('unit') else ''}"
        for v in msg.get("values", [])
    )
    radio = msg.get("radio", {})
    print(
        f"node {msg.get('node_name') or msg.get('node_id')} fcnt={msg.get('fcnt')} "
        f"rssi={radio.get('rssi')} snr={radio.get('snr')}  {values}",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError
    from gateway.service.demo import run_demo
    from gateway.sinks.url import parse_broker_url

    if args.nodes < 1 or args.nodes > 250:
        raise ConfigError(f"--nodes: {args.nodes} is outside 1..250")
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError(f"--seconds: {args.seconds} must be positive")
    web, extra = _web_options(args)
    if args.broker and parse_broker_url(args.broker, "--broker").password is not None:
        warn("a password on the command line is visible to other users (ps) and stays in the shell"
             " history: set LORA_GW_MQTT_PASSWORD instead")  # fmt: skip
    summary = run_demo(
        nodes=args.nodes,
        seconds=args.seconds if args.seconds is not None or web else 40.0,
        broker_url=args.broker,
        on_reading=None if args.json else _print_reading,
        confirmed=args.confirmed,
        web=web,
        **extra,
    )
    if args.json:
        json.dump(summary, sys.stdout, indent=2, default=str)
        print()
    else:
        print("summary:")
        for key, value in summary.items():
            print(f"  {key}: {value}")
    return 0


def _web_options(args: argparse.Namespace) -> tuple[tuple[str, int] | None, dict[str, Any]]:
    """``--web``: the listener, and for a run until stopped, real time and a stop on SIGINT/SIGTERM."""
    import signal
    import threading

    from gateway.errors import ConfigError
    from gateway.service.config import parse_listen

    if not args.web:
        return None, {}
    web = parse_listen(args.web, "--web")
    if web[0] not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError("--web: the demo serves loopback only (127.0.0.1:PORT)")
    if args.seconds is not None:
        return web, {}
    stop = threading.Event()

    def handler(*_args: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return web, {"stop": stop, "speed": 1.0}
