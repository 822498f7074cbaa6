"""Entry point of ``lora-fw`` (node-side tools): export-c, keygen, provision, console."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.errors import GatewayError
from gateway.frames.registry import parse_node_ref

DEFAULT_BAUD = 115200
RAW = argparse.RawDescriptionHelpFormatter


def _node_id(text: str) -> int:
    value = parse_node_ref(text)
    if value is None or not 0 <= value <= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node id (0..4294967295, decimal or 0x-hex)")
    return value


def _cr(text: str) -> int:
    """Coding rate ``4/5``..``4/8`` (or the denominator alone) → denominator."""
    den = text.split("/")[-1]
    if not den.isdigit() or not 5 <= int(den) <= 8 or ("/" in text and not text.startswith("4/")):
        raise argparse.ArgumentTypeError(f"coding rate {text!r}: expected 4/5, 4/6, 4/7 or 4/8")
    return int(den)


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="gateway state directory holding the node registry and models (default: as lora-gw:"
        " $LORA_GW_STATE_DIR, /var/lib/lora-gw as root, else ~/.local/state/lora-gw)",
    )


def _port(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, metavar="DEV", help="serial device, e.g. /dev/ttyUSB0 (required)")
    p.add_argument(
        "--baud",
        type=int,
        default=DEFAULT_BAUD,
        metavar="N",
        help=f"line speed in bit/s (default {DEFAULT_BAUD})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lora-fw",
        description="node-side tools for the LoRa gateway",
        epilog="examples:\n  lora-fw export-c --model demo --out firmware/lib/lgw\n"
        "  lora-fw keygen --node 0x1234 --name garden",
        formatter_class=RAW,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    exp = sub.add_parser(
        "export-c",
        help="write portable C99 for a node: frame builder, a model's encoder, AES",
        description="Write lgw_node.h, lgw_node.c and lgw_aes_ref.c (C99, <stdint.h> only, no heap, no\n"
        "floating point): the frame builder and the encoder of --model, or with --lpp the frame builder\n"
        "and a Cayenne LPP writer. --provisioning adds lgw_prov.h/lgw_prov.c, the node side of\n"
        "`lora-fw provision` (docs/provisioning.md).",
        epilog="examples:\n  lora-fw export-c --model /var/lib/lora-gw/models/m3-v2.npz --out src/lgw\n"
        "  lora-fw export-c --lpp --provisioning --out src/lgw",
        formatter_class=RAW,
    )
    what = exp.add_mutually_exclusive_group(required=False)
    what.add_argument(
        "--model",
        metavar="FILE",
        help="model weights (.npz, as installed by lora-gw model install), or 'demo' for the shipped"
        " weather demo model (no default: give --model or --lpp)",
    )
    what.add_argument(
        "--lpp", action="store_true", help="no model: frame builder + Cayenne LPP writer (default off)"
    )
    exp.add_argument(
        "--provisioning",
        action="store_true",
        help="also write the node side of the provisioning protocol, lgw_prov.[ch] (default off)",
    )
    exp.add_argument(
        "--out", default=".", metavar="DIR", help="output directory, created if missing (default .)"
    )
    exp.set_defaults(func=cmd_export)

    kg = sub.add_parser(
        "keygen",
        help="register a secured node with a fresh random AES-128 root key",
        description="Register a secured node with a new random root key (the OS CSPRNG) in the gateway's\n"
        "node registry, and print the key once, as hex and as a C initialiser for lgw_node_t.",
        epilog="examples:\n  lora-fw keygen --node 0x1234 --name garden\n"
        "  sudo lora-fw keygen --node 17 --state-dir /var/lib/lora-gw",
        formatter_class=RAW,
    )
    kg.add_argument(
        "--node", required=True, type=_node_id, metavar="ID", help="node id, decimal or 0x-hex (required)"
    )
    kg.add_argument("--name", help="unique node name (default node-<id>)")
    _state_dir(kg)
    kg.set_defaults(func=cmd_keygen)

    pv = sub.add_parser(
        "provision",
        help="write node id, key, radio settings, model and interval to a node over a serial port",
        description="Write a registered node's id, root key and key epoch, the radio settings, its model\n"
        "and reporting interval to the node over a serial line (docs/provisioning.md), then read every\n"
        "value back and verify it. Radio settings default to the gateway config's [radio] section.",
        epilog="examples:\n  lora-fw provision --port /dev/ttyUSB0 --node 0x1234\n"
        "  lora-fw provision --port /dev/ttyACM0 --node garden --config /etc/lora-gw/gateway.toml --sf 9",
        formatter_class=RAW,
    )
    _port(pv)
    pv.add_argument("--node", required=True, metavar="ID|NAME", help="a registered node (required)")
    pv.add_argument(
        "--config",
        metavar="FILE",
        help="gateway config whose [radio] settings the node must match (default: none, the gateway's"
        " defaults: 868.1 MHz, SF7, 125 kHz, 4/5, sync word 0x12)",
    )
    pv.add_argument(
        "--frequency-hz", type=int, metavar="HZ", help="carrier frequency in Hz (default: the config's)"
    )
    pv.add_argument("--sf", type=int, metavar="N", help="spreading factor 6..12 (default: the config's)")
    pv.add_argument(
        "--bw-hz", type=int, metavar="HZ", help="bandwidth in Hz, e.g. 125000 (default: the config's)"
    )
    pv.add_argument("--cr", type=_cr, metavar="4/N", help="coding rate 4/5..4/8 (default: the config's)")
    pv.add_argument(
        "--sync-word", type=lambda t: int(t, 0), metavar="N", help="sync word (default: the config's)"
    )
    pv.add_argument(
        "--tx-power-dbm", type=int, default=14, metavar="DBM", help="node TX power in dBm, 2..20 (default 14)"
    )
    pv.add_argument(
        "--model-id", type=int, metavar="N", help="model id 0..15, 255 for none (default: the registry's)"
    )
    pv.add_argument(
        "--model-version",
        type=int,
        metavar="N",
        help="model version (default: the installed active version, else 0)",
    )
    pv.add_argument(
        "--interval-s",
        type=int,
        metavar="S",
        help="reporting interval in s (default: the registry's, else 60)",
    )
    pv.add_argument(
        "--timeout-s", type=float, default=0.5, metavar="S", help="answer timeout per try in s (default 0.5)"
    )
    pv.add_argument("--retries", type=int, default=3, metavar="N", help="retries per message (default 3)")
    _state_dir(pv)
    pv.set_defaults(func=cmd_provision)

    co = sub.add_parser(
        "console",
        help="serial monitor that decodes the hex frame dumps in a node's debug output",
        description="Print a node's serial debug output; every line holding a frame as hex gets the\n"
        "gateway decoder's reading (node, counter, values) or the reason the gateway would reject it.\n"
        "Nothing is stored: counters advance in memory only. Ctrl-C ends.",
        epilog="examples:\n  lora-fw console --port /dev/ttyUSB0\n"
        "  lora-fw console --port /dev/ttyACM0 --baud 9600",
        formatter_class=RAW,
    )
    _port(co)
    co.add_argument(
        "--lines", type=int, default=0, metavar="N", help="stop after N lines (default 0: until Ctrl-C)"
    )
    _state_dir(co)
    co.set_defaults(func=cmd_console)
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    from firmware_tools.export_c import export_lpp, export_model, export_provisioning

    if not args.lpp and args.model is None and not args.provisioning:
        raise GatewayError("export-c: give --model FILE or --lpp (and/or --provisioning)")
    written = []
    if args.lpp:
        written += export_lpp(args.out).files
    elif args.model is not None:
        from gateway.codec import demo_model, load_weights

        model = demo_model() if args.model == "demo" else load_weights(args.model)
        written += export_model(model, args.out, Path(args.model).name).files
    if args.provisioning:
        written += export_provisioning(args.out).files
    for path in written:
        print(path)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from firmware_tools.keygen import keygen

    new = keygen(args.node, args.name, args.state_dir)
    node = new.node
    print(f"node {node.node_id} (0x{node.node_id:08x}) registered as {node.name}, secured")
    print(f"root key: {new.key.hex()}")
    print(new.c_initialiser())
    print(
        "the key is shown only now: provision it (lora-fw provision) or store it privately", file=sys.stderr
    )
    return 0


def _settings(args: argparse.Namespace):
    from firmware_tools.provisioning import NodeSettings
    from gateway.codec import ModelStore
    from gateway.frames.registry import NodeRegistry
    from gateway.paths import state_dir
    from gateway.service.config import RadioSection, load_config

    radio = load_config(args.config).radio if args.config else RadioSection()
    with NodeRegistry.open(args.state_dir) as registry:
        node = registry.find(args.node)
    model_id = args.model_id if args.model_id is not None else node.model_id
    model_id = 0xFF if model_id is None else model_id
    version = args.model_version
    if version is None:
        active = ModelStore(state_dir(args.state_dir)).active(model_id) if model_id != 0xFF else None
        version = active.version if active is not None else 0
    return NodeSettings(
        node_id=node.node_id,
        root_key=node.key,
        key_epoch=node.key_epoch,
        frequency_hz=args.frequency_hz or radio.frequency_hz,
        spreading_factor=args.sf or radio.sf,
        bandwidth_hz=args.bw_hz or radio.bw_hz,
        coding_rate=args.cr or _cr(radio.cr),
        sync_word=radio.sync_word if args.sync_word is None else args.sync_word,
        tx_power_dbm=args.tx_power_dbm,
        model_id=model_id,
        model_version=version,
        interval_s=args.interval_s or int(node.interval_s or 60),
    )


def cmd_provision(args: argparse.Namespace) -> int:
    from firmware_tools.provisioning import Provisioner, open_port
    from firmware_tools.provisioning.protocol import Field

    settings = _settings(args)
    port = open_port(args.port, args.baud)
    try:
        prov = Provisioner(port, args.port, timeout_s=args.timeout_s, retries=args.retries)
        verified = prov.provision(settings)
    finally:
        port.close()
    print(f"node {settings.node_id} provisioned on {args.port} ({prov.node_text or 'node'}); read back:")
    for v in verified:
        shown = f"key check value {v.value.hex()}" if v.field is Field.ROOT_KEY else str(v.value)  # type: ignore[union-attr]
        print(f"  {v.field.name.lower():<18} {shown}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from firmware_tools.console import Console, port_lines
    from firmware_tools.provisioning import open_port
    from gateway.frames import FrameDecoder
    from gateway.frames.registry import NodeRegistry
    from gateway.paths import state_dir
    from gateway.pipeline.models import InstalledModels

    models = InstalledModels(state_dir(args.state_dir))
    with NodeRegistry.open(args.state_dir) as registry:
        decoder = FrameDecoder(registry.nodes(), models=models.candidates)
    console = Console(decoder, models)
    port = open_port(args.port, args.baud)
    port.timeout = 0.2
    try:
        console.run(port_lines(port, args.lines), sys.stdout)
    finally:
        port.close()
    print(f"{console.frames} frames decoded, {console.rejected} rejected", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except GatewayError as exc:
        print(f"lora-fw: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
