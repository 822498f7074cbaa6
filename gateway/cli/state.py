"""``lora-gw state init``: create the state database deliberately (the only way one is ever re-created)."""

from __future__ import annotations

import argparse
import json

from gateway import paths, statedb


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("state", help="the gateway's state database (gateway.db)")
    ssub = p.add_subparsers(dest="state_command", metavar="ACTION")
    ssub.required = True
    init = ssub.add_parser(
        "init",
        help="create the state database, or start a new one after it was lost",
        description="A usable database is left alone. When gateway.db was emptied or deleted, its remnants"
        " are renamed *.lost-<time> (never deleted) and a new, empty database is created: the nodes must"
        " then be added again (or a backup restored). When only its -wal was deleted, the database is"
        " kept as it is.",
        epilog="example: sudo lora-gw state init",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="also set aside a gateway.db that is not a database at all (default: refuse)",
    )
    init.add_argument("--json", action="store_true", help="print one JSON object")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    db = paths.db_path(args.state_dir)
    result = statedb.init(db, force=args.force)
    if args.json:
        print(
            json.dumps(
                {"action": result.action, "database": str(db), "set_aside": [str(p) for p in result.moved]}
            )
        )
        return 0
    print(result.message)
    for p in result.moved:
        print(f"  set aside: {p}")
    return 0
