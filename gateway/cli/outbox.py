"""``lora-gw outbox list|retry|drop``: the parked (poison) messages in the state database's outbox.

A parked message is one the broker or the MQTT client refused for its own content; it stays in the
outbox, out of the publishing order, until the operator requeues it (after fixing the cause: a broker
limit, an ACL, a node name) or drops it. Every change goes through :class:`gateway.sinks.outbox.Outbox`.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from gateway import paths
from gateway.errors import GatewayError
from gateway.frames.registry import NodeRegistry, shown
from gateway.sinks.outbox import Outbox, ParkedRow


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("outbox", help="parked (poison) messages in the outbox: list, retry, drop")
    sub = parser.add_subparsers(dest="outbox_command", metavar="ACTION")
    sub.required = True

    lst = sub.add_parser("list", help="list parked messages (id, node, fcnt, reason, when)")
    lst.add_argument("--json", action="store_true", help="a JSON array")
    lst.set_defaults(func=cmd_list)

    for name, helptext, func in (
        (
            "retry",
            "return parked messages to the queue (a running gateway takes them within its "
            "outbox.redecode_interval_s)",
            cmd_retry,
        ),
        ("drop", "delete parked messages for good", cmd_drop),
    ):
        p = sub.add_parser(name, help=helptext)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="parked message id")
        which.add_argument("--all", action="store_true", help="every parked message")
        p.set_defaults(func=func)


def _open(args: argparse.Namespace) -> Outbox:
    return Outbox(paths.db_path(getattr(args, "state_dir", None)))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else "-"


def _names(args: argparse.Namespace) -> dict[int, str]:
    with NodeRegistry(paths.db_path(getattr(args, "state_dir", None))) as registry:
        return {n.node_id: n.name for n in registry.nodes()}


def cmd_list(args: argparse.Namespace) -> int:
    outbox = _open(args)
    try:
        rows = outbox.parked_rows()
    finally:
        outbox.close()
    names = _names(args)
    if args.json:
        print(json.dumps([{**r.to_dict(), "node_name": names.get(r.node_id)} for r in rows]))
        return 0
    if not rows:
        print("no parked messages")
        return 0
    print(f"{'ID':>8}  {'NODE':<10}  {'NAME':<16}  {'FCNT':>10}  {'PARKED (UTC)':<20}  {'STATE':<8}  REASON")
    for r in rows:
        state = "parked" if r.state == 2 else "requeued"
        name = shown(names[r.node_id], 40) if r.node_id in names else "-"
        print(
            f"{r.row_id:>8}  0x{r.node_id:08x}  {name:<16}  {r.fcnt:>10}  {_when(r.parked_ms):<20}  "
            f"{state:<8}  {shown(r.reason, 200)}"
        )
    return 0


def _change(args: argparse.Namespace, verb: str) -> list[ParkedRow]:
    if not args.all and not args.ids:
        raise GatewayError(f"outbox {verb}: name parked message ids, or --all")
    outbox = _open(args)
    try:
        ids = None if args.all else list(args.ids)
        return outbox.retry_parked(ids) if verb == "retry" else outbox.drop_parked(ids)
    finally:
        outbox.close()


def cmd_retry(args: argparse.Namespace) -> int:
    rows = _change(args, "retry")
    print(
        f"requeued {len(rows)} parked message(s); a running gateway publishes them within its"
        " outbox.redecode_interval_s (a new start: at once)"
    )
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    rows = _change(args, "drop")
    print(f"dropped {len(rows)} parked message(s): " + (", ".join(str(r.row_id) for r in rows) or "none"))
    return 0
