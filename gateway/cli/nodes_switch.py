"""``lora-gw nodes set-model``, and what ``nodes list/show`` add about each node's firmware.

The command is queued in the state database (table ``downlink_commands``), where a running service
picks it up within a second and sends it in the node's next receive window; its statuses go to
``lora/<gw>/nodes/<node>/command/status`` like those of commands from MQTT. It is queued only when the
node reported holding that version and the gateway has it installed (gateway.downlink.nodeinfo).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from gateway import paths, statedb
from gateway.cli.notices import warn
from gateway.codec import CodecError, ModelStore
from gateway.codec.store import parse_ref
from gateway.downlink.commands import MAX_EXPIRES_S, CommandRejected, DownlinkStore
from gateway.downlink.nodeinfo import NodeInfoStore, Reported, SwitchRefused, check_switch, set_model_command
from gateway.frames.registry import NodeRegistry, RegistryError, shown
from gateway.frames.types import NodeFormat


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "set-model",
        help="tell a node to switch its learned model (only to a version it reported holding)",
        description="Queue the node command 0x02 (set model) for the node's next receive window. Refused"
        " (exit 2) unless the gateway has ID@VERSION installed and the node's last node-info report lists"
        " it with the same fingerprint. --force sends it to a node that never reported (firmware without"
        " node info): a node that lacks the model ignores the command at best, or sends frames the gateway"
        " cannot decode. A report without that version, or with another model under its number, is never"
        " overridden. A running gateway sends it in the node's next receive window; `lora-gw nodes show"
        " NODE` shows its status, MQTT lora/<gw>/nodes/<node>/command/status too.",
        epilog="examples:\n"
        "  lora-gw nodes set-model garden 3@9 --confirm\n"
        "  lora-gw nodes set-model 0x1234 3@9 --force   # a node whose firmware sends no node info",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("node", metavar="ID|NAME", help="the node: its id (decimal or 0x-hex) or its name")
    p.add_argument("model", metavar="ID@VERSION", help="the model version to switch to, e.g. 3@9")
    p.add_argument(
        "--confirm", action="store_true", help="the node acknowledges it in its next uplink (default: no)"
    )
    p.add_argument(
        "--expires",
        type=float,
        metavar="S",
        help=f"drop it if not sent within S seconds (0 < S <= {MAX_EXPIRES_S:.0f}; default: never)",
    )
    p.add_argument("--id", metavar="TEXT", help="the id its statuses carry (default set-model-ID@VERSION)")
    p.add_argument(
        "--force",
        action="store_true",
        help="send it to a node that never reported its models (default: refuse)",
    )
    p.add_argument("--json", action="store_true", help="print the queued command as JSON")
    p.set_defaults(func=cmd_set_model)


def _installed_fp(state_dir: Path, model_id: int, version: int) -> bytes | None:
    store = ModelStore(state_dir)
    if version not in store.versions(model_id):
        return None
    try:
        return store.load(model_id, version).fingerprint
    except CodecError:
        return None  # installed but unusable: the gateway could not decode with it either


def cmd_set_model(args: argparse.Namespace) -> int:
    model_id, version = parse_ref(args.model)
    if version is None:
        raise SwitchRefused(f"give the version too: {model_id}@VERSION (lora-gw model list)", "bad_model")
    if args.expires is not None and not 0 < args.expires <= MAX_EXPIRES_S:
        raise SwitchRefused(f"--expires {args.expires:g}: expected 0 < S <= {MAX_EXPIRES_S:.0f}", "bad_model")
    state_dir = paths.state_dir(getattr(args, "state_dir", None))
    with NodeRegistry.open(state_dir) as registry:
        node = registry.find(args.node)
    if node.format is not NodeFormat.FRAME:
        raise RegistryError(
            f"node {node.node_id}: format {node.format.value} nodes take no downlink commands", "bad_node"
        )
    label = shown(node.name)
    payload = set_model_command(model_id, version)
    cmd_id = args.id or f"set-model-{model_id}@{version}"
    db = statedb.connect(paths.db_path(state_dir))
    try:
        reported = NodeInfoStore(db, create=False).get(node.node_id)
        fp = _installed_fp(state_dir, model_id, version)
        warning = check_switch(label, model_id, version, reported, fp, args.force)
        try:
            DownlinkStore(db, owner=False).enqueue(node.node_id, payload, args.confirm, args.expires, cmd_id)
        except CommandRejected as exc:
            raise SwitchRefused(f"node {label}: {exc.reason}", "queue_full") from None
    finally:
        db.close()
    if warning is not None:
        warn(warning)
    if args.json:
        out = {"node_id": node.node_id, "name": node.name, "model": f"{model_id}@{version}", "id": cmd_id}
        print(json.dumps({**out, "payload_hex": payload.hex(), "status": "queued", "warning": warning}))
    else:
        print(
            f"node {label}: set model {model_id}@{version} queued (id {cmd_id}); it goes in the node's"
            f" next receive window{', to be acknowledged' if args.confirm else ''}"
            f" (status: lora-gw nodes show {label})"
        )
    return 0


# ---------------------------------------------------------------------- nodes list / show
def reports(
    registry: NodeRegistry, node_id: int | None = None
) -> tuple[dict[int, Reported], dict[int, list]]:
    """(node id → last node-info report, and for ``node_id`` its recent commands) from the registry's
    database."""
    try:
        db = statedb.connect(registry.path)
    except statedb.StateDbError:
        return {}, {}
    try:
        found = NodeInfoStore(db, create=False).all()
        if node_id is None:
            return found, {}
        store = DownlinkStore(db, owner=False)  # creates its (empty) tables at most; recovers nothing
        return found, {node_id: store.recent(node_id)}
    except sqlite3.Error:
        return {}, {}
    finally:
        db.close()


def info_dict(reported: Reported | None, commands: list | None = None) -> dict:
    """The keys ``nodes list/show --json`` add to a node: its last report and its last commands."""
    out: dict = {"node_info": None if reported is None else reported.to_dict()}
    if commands is not None:
        out["commands"] = [
            {"id": cid, "payload_hex": payload.hex(), "status": status, "created_utc": _utc(created)}
            for cid, payload, status, created in commands
        ]
    return out


def _utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds")


def describe(reported: Reported | None, commands: list | None) -> list[str]:
    if reported is None:
        lines = ["firmware    not reported (no node-info frame yet; lora-gw nodes set-model needs one)"]
    else:
        i = reported.info
        lines = [
            f"firmware    {i.firmware_version} (reported {reported.reported_utc})",
            "holds       "
            + (", ".join(f"{m.key} (fingerprint {m.fp_prefix.hex()}…)" for m in i.models) or "no models"),
            f"sends with  {'raw or LPP' if i.active is None else f'{i.active[0]}@{i.active[1]}'}",
        ]
    for n, (cid, payload, status, created) in enumerate(commands or ()):
        head = "commands" if n == 0 else ""
        lines.append(f"{head:<12}{shown(cid or '-', 40)} {payload.hex()} {status} ({_utc(created)})")
    return lines
