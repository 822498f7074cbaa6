"""``lora-gw airtime``: time on air of one packet, its symbol time, and the 1 % duty-cycle budget."""

from __future__ import annotations

import argparse
import json

from gateway.errors import ConfigError
from gateway.radio import airtime
from gateway.radio.regs import BANDWIDTHS_HZ, CODING_RATES


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "airtime",
        help="time on air of a LoRa packet and the packets per hour a 1 %% duty cycle allows",
        description="Time on air from the SX1276 datasheet formula.",
    )
    p.add_argument("--sf", type=int, required=True, help="spreading factor 6..12 (required)")
    bw = p.add_mutually_exclusive_group(required=True)
    bw.add_argument(
        "--bw",
        type=bandwidth_khz,
        metavar="KHZ",
        help="bandwidth in kHz (7.8 10.4 15.6 20.8 31.25 41.7 62.5 125 250 500), or with a unit: 125kHz,"
        " 125000Hz (required: --bw or --bw-hz)",
    )
    bw.add_argument(
        "--bw-hz",
        dest="bw",
        type=lambda text: bandwidth_khz(text, default_unit="hz"),
        metavar="HZ",
        help="bandwidth in Hz, as radio.bw_hz in the config, e.g. 125000 (required: --bw or --bw-hz)",
    )
    p.add_argument("--cr", default="4/5", help="coding rate 4/5..4/8 (default 4/5)")
    p.add_argument(
        "--payload",
        type=int,
        required=True,
        metavar="BYTES",
        help="payload length in bytes, 0..255 (required)",
    )
    p.add_argument(
        "--preamble", type=int, default=8, metavar="SYMBOLS", help="preamble length in symbols (default 8)"
    )
    p.add_argument("--implicit", action="store_true", help="implicit header mode (default: explicit header)")
    p.add_argument("--no-crc", action="store_true", help="payload CRC off (default: on)")
    p.add_argument(
        "--ldro", choices=("auto", "on", "off"), default="auto", help="LowDataRateOptimize (default auto)"
    )
    p.add_argument("--json", action="store_true", help="print JSON (default: text)")
    p.set_defaults(func=run)


def bandwidth_khz(text: str, default_unit: str = "khz") -> float:
    """``125``, ``125kHz``, ``125000Hz`` (or a plain number in ``default_unit``) → kHz."""
    t = text.strip().lower().replace(" ", "")
    unit = default_unit
    for suffix in ("khz", "mhz", "hz"):
        if t.endswith(suffix):
            t, unit = t[: -len(suffix)], suffix
            break
    try:
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a bandwidth (e.g. 125, 125kHz, 125000Hz)"
        ) from None
    return value * {"hz": 1e-3, "khz": 1.0, "mhz": 1e3}[unit]


def compute(args: argparse.Namespace) -> dict[str, object]:
    bw_hz = args.bw * 1000.0
    if args.cr not in CODING_RATES:
        raise ConfigError(f"--cr {args.cr}: use one of {', '.join(CODING_RATES)}", "bad_argument")
    ldro = {"auto": None, "on": True, "off": False}[args.ldro]
    try:
        nominal = airtime.nominal_bandwidth_hz(bw_hz)
        toa = airtime.time_on_air_s(
            args.payload, args.sf, bw_hz, args.cr, args.preamble, args.implicit, not args.no_crc, ldro
        )
        tsym = airtime.symbol_time_s(args.sf, bw_hz)
    except ValueError as exc:
        if "bandwidth" in str(exc):
            kinds = ", ".join(f"{b / 1000:g}" for b in BANDWIDTHS_HZ)
            raise ConfigError(f"--bw {args.bw:g}: use one of {kinds} (kHz)", "bad_argument") from exc
        raise ConfigError(str(exc), "bad_argument") from exc
    ldro_used = airtime.ldro_required(args.sf, bw_hz) if ldro is None else ldro
    return {
        "sf": args.sf,
        "bw_hz": nominal,
        "cr": args.cr,
        "payload_bytes": args.payload,
        "preamble": args.preamble,
        "implicit_header": args.implicit,
        "crc": not args.no_crc,
        "ldro": ldro_used,
        "airtime_ms": round(toa * 1000, 3),
        "symbol_ms": round(tsym * 1000, 6),
        "packets_per_hour_1pct": airtime.packets_per_hour(toa, 0.01),
    }


def run(args: argparse.Namespace) -> int:
    result = compute(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"time on air:      {result['airtime_ms']:.3f} ms")
    print(f"symbol time:      {result['symbol_ms']:.3f} ms")
    print(f"1 % duty cycle:   {result['packets_per_hour_1pct']} packets per hour")
    print(f"LowDataRateOptimize {'on' if result['ldro'] else 'off'}")
    return 0
