"""``lora-gw nodes add|list|show|rename|remove|reset-counter|set-model``: the node registry in the state
database (``set-model``, and the firmware reports ``list``/``show`` print: gateway.cli.nodes_switch).

Stored names are printed through ``shown`` (escaped): a name from before names were checked may hold
control characters or bytes a terminal cannot print."""

from __future__ import annotations

import argparse
import json
import secrets

from gateway.cli import keyinput, nodes_switch
from gateway.cli.notices import warn
from gateway.frames.registry import NAME_RULE, Node, NodeRegistry, RegistryError, parse_node_ref, shown
from gateway.frames.types import NodeFormat, PayloadCodec


def _node_id(text: str) -> int:
    value = parse_node_ref(text)
    if value is None or not 0 <= value <= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node id (0..4294967295, decimal or 0x-hex)")
    return value


def _key(text: str) -> bytes | str:
    """``--key``: ``-`` (read it from standard input), else the hex key itself (discouraged: see keyinput)."""
    if text == keyinput.STDIN:
        return text
    try:
        return keyinput.parse_key(text, "--key")
    except keyinput.KeyInputError:
        raise argparse.ArgumentTypeError("a key is 32 hex digits (AES-128)") from None


def _location(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"location {text!r}: expected 'lat,lon' in degrees") from None
    return lat, lon


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("nodes", help="the node registry (ids, formats, keys, counters)")
    sub = parser.add_subparsers(dest="nodes_command", metavar="ACTION")
    sub.required = True

    add = sub.add_parser(
        "add",
        help="register a node",
        description="Register a node. Give a secured node's key on standard input or in a private file,\n"
        "never on the command line (where ps and the shell history show it to other users).",
        epilog="examples:\n"
        "  lora-gw nodes add 0x1234 --name garden --generate-key\n"
        "  lora-gw nodes add 0x1234 --name garden --key-file /root/garden.key   # chmod 600 the file\n"
        "  lora-gw nodes add 0x1234 --name garden --key - < /root/garden.key\n"
        "  lora-gw nodes add 0x1234 --name garden --key -     # type or paste it, then Ctrl-D",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("node_id", type=_node_id, metavar="ID", help="node id, decimal or 0x-hex (32 bits)")
    add.add_argument("--name", help=f"unique name, {NAME_RULE} (default node-<id>)")
    add.add_argument(
        "--format",
        choices=[f.value for f in NodeFormat],
        default=NodeFormat.FRAME.value,
        help="what the node transmits: frame (ours, default), lpp (bare Cayenne LPP), "
        "radiohead (RH_RF95 header), raw (hex pass-through)",
    )
    add.add_argument(
        "--payload", choices=["lpp", "raw"], help="radiohead nodes: how to read the data (default lpp)"
    )
    keys = add.add_mutually_exclusive_group()
    keys.add_argument(
        "--key",
        type=_key,
        metavar="-",
        help="read the node's AES-128 root key (32 hex digits, secured profile) from standard input"
        " (default: no key, an open node)",
    )
    keys.add_argument(
        "--key-file",
        metavar="PATH",
        help="read the node's root key from PATH (32 hex digits; chmod 600; default: no key)",
    )
    keys.add_argument("--generate-key", action="store_true", help="generate a random AES-128 root key")
    add.add_argument(
        "--model", type=int, metavar="ID", help="learned codec model id (0..15) the node uses (default: none)"
    )
    add.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="reporting interval in seconds (default: [nodes] report_interval_s)",
    )
    add.add_argument(
        "--location", type=_location, metavar="LAT,LON", help="position in degrees (default: none)"
    )
    add.add_argument(
        "--radiohead-address",
        type=int,
        metavar="N",
        help="RadioHead FROM address, 0..254 (required with --format radiohead)",
    )
    add.add_argument("--show-keys", action="store_true", help="print the key (to provision the node)")
    add.add_argument(
        "--force",
        action="store_true",
        help="add a key that a removed node used (it continues in a new key epoch from counter 0)",
    )
    add.add_argument("--json", action="store_true", help="print the node as JSON")
    add.set_defaults(func=cmd_add)

    lst = sub.add_parser("list", help="list registered nodes")
    lst.add_argument("--json", action="store_true", help="a JSON array")
    lst.add_argument("--show-keys", action="store_true", help="include keys")
    lst.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="show one node")
    show.add_argument("node", metavar="ID|NAME", help="the node: its id (decimal or 0x-hex) or its name")
    show.add_argument("--json", action="store_true", help="a JSON object")
    show.add_argument("--show-keys", action="store_true", help="include the key")
    show.set_defaults(func=cmd_show)

    ren = sub.add_parser("rename", help="give a node a new name (its topics follow within a minute)")
    ren.add_argument("node", metavar="ID|NAME", help="the node: its id (decimal or 0x-hex) or its name")
    ren.add_argument("name", metavar="NEW-NAME", help=NAME_RULE)
    ren.set_defaults(func=cmd_rename)

    rm = sub.add_parser("remove", help="remove a node (its frames are rejected from then on)")
    rm.add_argument("node", metavar="ID|NAME", help="the node: its id (decimal or 0x-hex) or its name")
    rm.set_defaults(func=cmd_remove)

    reset = sub.add_parser(
        "reset-counter",
        help="after a node lost its counter: start a new key epoch (--new-epoch) or set it (--next N)",
        description="After a node lost its frame counter. --new-epoch (secured nodes): the node's session "
        "keys change to the next key epoch and its counter starts at 0; frames from before no longer verify "
        "and no keystream repeats, but the node must be told the new epoch. --next N: the gateway accepts "
        "counters from N on with the same keys, so frames recorded before can be replayed once and, for a "
        "secured node restarting below its old counter, keystreams repeat. See docs/frame-format.md.",
    )
    reset.add_argument("node", metavar="ID|NAME", help="the node: its id (decimal or 0x-hex) or its name")
    how = reset.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--next",
        type=int,
        metavar="N",
        help="next expected counter, 0..4294967295, same key epoch (required: --next or --new-epoch)",
    )
    how.add_argument(
        "--new-epoch", action="store_true", help="secured nodes: next key epoch, counter from 0 (preferred)"
    )
    reset.set_defaults(func=cmd_reset_counter)
    nodes_switch.register(sub)


def _open(args: argparse.Namespace) -> NodeRegistry:
    return NodeRegistry.open(getattr(args, "state_dir", None))


def _describe(node: Node, show_keys: bool) -> list[str]:
    lines = [
        f"node        {node.node_id} (0x{node.node_id:08x})",
        f"name        {shown(node.name)}",
        f"format      {node.format.value}",
    ]
    if node.payload_codec is not None:
        lines.append(f"payload     {node.payload_codec.value}")
    if node.radiohead_address is not None:
        lines.append(f"radiohead   address {node.radiohead_address}")
    if node.format is NodeFormat.FRAME:
        lines.append(f"profile     {'secured (AES-CMAC MIC, AES-CTR)' if node.secured else 'open (CRC-16)'}")
    if node.key is not None:
        lines.append(f"key         {node.key.hex() if show_keys else '(hidden; --show-keys)'}")
    if node.model_id is not None:
        lines.append(f"model       {node.model_id}")
    if node.interval_s is not None:
        lines.append(f"interval    {node.interval_s:g} s")
    if node.latitude is not None:
        lines.append(f"location    {node.latitude:.6f},{node.longitude:.6f}")
    lines.append(
        f"next fcnt   {node.next_fcnt}" + (f" (reset {node.counter_epoch}×)" if node.counter_epoch else "")
    )
    if node.secured:
        lines.append(f"key epoch   {node.key_epoch}")
    lines.append(f"added       {node.created_utc}")
    return lines


def _root_key(args: argparse.Namespace) -> bytes | None:
    if args.generate_key:
        return secrets.token_bytes(keyinput.KEY_BYTES)
    if args.key_file is not None:
        return keyinput.read_key_file(args.key_file)
    if args.key == keyinput.STDIN:
        return keyinput.read_stdin_key()
    if args.key is not None:
        warn("a key on the command line is visible to other users (ps) and stays in the shell history:"
             " use --key - (standard input) or --key-file PATH")  # fmt: skip
    return args.key


def cmd_add(args: argparse.Namespace) -> int:
    key = _root_key(args)
    lat, lon = args.location if args.location else (None, None)
    node = Node(
        node_id=args.node_id,
        name=args.name or f"node-{args.node_id}",
        format=NodeFormat(args.format),
        payload=PayloadCodec(args.payload) if args.payload else None,
        key=key,
        model_id=args.model,
        interval_s=args.interval,
        latitude=lat,
        longitude=lon,
        radiohead_address=args.radiohead_address,
    )
    with _open(args) as registry:
        stored = registry.add(node, force=args.force)
    if stored.key_epoch:
        warn(
            f"this key was used by a removed node: node {stored.node_id} continues in key epoch"
            f" {stored.key_epoch} from counter 0; provision the node with that epoch"
        )
    if args.json:
        print(json.dumps(stored.to_dict(args.show_keys)))
    else:
        print("\n".join(_describe(stored, args.show_keys)))
        if key is not None and not args.show_keys:
            print(
                "the key is stored; print it for provisioning with: lora-gw nodes show "
                f"{stored.node_id} --show-keys"
            )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        nodes = registry.nodes()
        reports, _ = nodes_switch.reports(registry)
    if args.json:
        out = [{**n.to_dict(args.show_keys), **nodes_switch.info_dict(reports.get(n.node_id))} for n in nodes]
        print(json.dumps(out))
        return 0
    if not nodes:
        print("no nodes registered (add one with: lora-gw nodes add ID)")
        return 0
    header = f"{'ID':>10}  {'HEX':<10}  {'NAME':<16}  {'FORMAT':<9}  {'PROFILE':<7}  "
    header += f"{'MODEL':>5}  {'NEXT FCNT':>10}  {'FIRMWARE':<8}  HOLDS"
    if args.show_keys:
        header += "  KEY"
    print(header)
    for n in nodes:
        profile = ("secured" if n.secured else "open") if n.format is NodeFormat.FRAME else "-"
        model = "-" if n.model_id is None else str(n.model_id)
        line = (
            f"{n.node_id:>10}  0x{n.node_id:08x}  {shown(n.name, 40):<16}  {n.format.value:<9}  "
            f"{profile:<7}  {model:>5}  {n.next_fcnt:>10}  {_firmware(reports.get(n.node_id))}"
        )
        if args.show_keys:
            line += "  " + (n.key.hex() if n.key else "-")
        print(line)
    return 0


def _firmware(reported: nodes_switch.Reported | None) -> str:
    """FIRMWARE and HOLDS of ``nodes list``: ``-`` for a node that never reported."""
    if reported is None:
        return f"{'-':<8}  -"
    return f"{reported.info.firmware_version:<8}  {reported.models_text}"


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        node = registry.find(args.node)
        reports, commands = nodes_switch.reports(registry, node.node_id)
    reported, cmds = reports.get(node.node_id), commands.get(node.node_id, [])
    if args.json:
        print(json.dumps({**node.to_dict(args.show_keys), **nodes_switch.info_dict(reported, cmds)}))
    else:
        lines = _describe(node, args.show_keys)
        if node.format is NodeFormat.FRAME:
            lines += nodes_switch.describe(reported, cmds)
        print("\n".join(lines))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        node = registry.find(args.node)
        registry.remove(node.node_id)
    print(f"removed node {node.node_id} ({shown(node.name)})")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        node = registry.find(args.node)
        updated = registry.rename(node.node_id, args.name)
    print(
        f"node {node.node_id}: renamed {shown(node.name)} -> {updated.name};"
        " a running gateway follows within a minute"
    )
    return 0


def cmd_reset_counter(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        node = registry.find(args.node)
        if args.new_epoch:
            if not node.secured:
                raise RegistryError(
                    f"node {node.node_id}: --new-epoch needs a secured node (open frames have no keys to"
                    " change); use --next N",
                    "bad_node",
                )
            updated = registry.reset_counter(node.node_id, 0, new_epoch=True)
        else:
            if not 0 <= args.next <= 0xFFFF_FFFF:
                raise RegistryError(f"--next {args.next} is outside 0..4294967295", "bad_node")
            updated = registry.reset_counter(node.node_id, args.next)
    print("\n".join(_reset_report(node, updated)))
    return 0


def _reset_report(old: Node, new: Node) -> list[str]:
    """What the reset means, for the operator who must now act on the node too."""
    head = f"node {new.node_id} ({shown(new.name)}): next frame counter {old.next_fcnt} → {new.next_fcnt}"
    if new.key_epoch != old.key_epoch:
        return [
            f"{head}, key epoch {old.key_epoch} → {new.key_epoch}",
            f"accepted from now on: frames made with key epoch {new.key_epoch}, counter {new.next_fcnt} or"
            f" higher; every frame from before (key epoch {old.key_epoch}) fails its MIC",
            f"the node must derive its session keys with key epoch {new.key_epoch} and restart its counter"
            " at 0 (docs/frame-format.md); a running gateway follows within seconds",
        ]
    lines = [
        f"{head} (key epoch {new.key_epoch} unchanged)",
        f"accepted from now on: counters {new.next_fcnt} or higher; a running gateway follows within seconds",
    ]
    if new.secured and new.next_fcnt < old.next_fcnt:
        lines.append(
            f"warning: frames recorded with counters {new.next_fcnt}..{old.next_fcnt - 1} can be replayed"
            " once, and the node reuses their keystreams: prefer --new-epoch"
        )
    return lines
