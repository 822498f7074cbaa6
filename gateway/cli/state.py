"""``lora-gw state init|backup|restore``: the gateway's state database (gateway.db) and its backups.

The passphrase of an encrypted backup comes from ``--passphrase-file``, ``$LORA_GW_BACKUP_PASSPHRASE``
or a prompt, never from the command line (where ps and the shell history show it)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from gateway import backup, paths, statedb
from gateway.cli.examples import ExamplesFormatter
from gateway.errors import GatewayError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "state",
        help="the gateway's state database (gateway.db): create, back up, restore",
        epilog="examples:\n"
        "  sudo lora-gw state backup /mnt/usb/gw.lgwbak --config /etc/lora-gw/gateway.toml\n"
        "  sudo lora-gw state restore /mnt/usb/gw.lgwbak --config /etc/lora-gw/gateway.toml",
        formatter_class=ExamplesFormatter,
    )
    ssub = p.add_subparsers(dest="state_command", metavar="ACTION")
    ssub.required = True
    init = ssub.add_parser(
        "init",
        help="create the state database, or start a new one after it was lost",
        description="A usable database is left alone. When gateway.db was emptied or deleted, its remnants"
        " are renamed *.lost-<time> (never deleted) and a new, empty database is created: the nodes must"
        " then be added again (or a backup restored). When only its -wal was deleted, the database is"
        " kept as it is.",
        epilog="example: sudo lora-gw state init --config /etc/lora-gw/gateway.toml",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="also set aside a gateway.db that is not a database at all (default: refuse)",
    )
    init.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    init.set_defaults(func=cmd_init)

    bk = ssub.add_parser(
        "backup",
        help="copy the state (registry, keys, counters, outbox, models, config) into FILE, online",
        description="Takes a consistent copy with SQLite's backup API while the service runs (it is not"
        " stopped or slowed). FILE is written 0600: it holds the node keys. With --config the config file"
        " and its secrets file are included.",
        epilog="examples:\n"
        "  sudo lora-gw state backup /mnt/usb/gw-$(date +%F).lgwbak --config /etc/lora-gw/gateway.toml\n"
        "  sudo lora-gw state backup gw.lgwbak --config /etc/lora-gw/gateway.toml "
        "--passphrase-file /root/backup.pass",
        formatter_class=ExamplesFormatter,
    )
    bk.add_argument("file", metavar="FILE", help="the backup file to write (refused if it exists)")
    _passphrase_options(bk, encrypt_option=True)
    bk.add_argument("--force", action="store_true", help="overwrite FILE if it exists (default: refuse)")
    bk.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    bk.set_defaults(func=cmd_backup, adopt_owner=False)  # root writes FILE; the copy runs as the owner

    rs = ssub.add_parser(
        "restore",
        help="replace the state by a backup; counters only move forward (refused while the service runs)",
        description="Counters are raised to the highest this state directory (its existing gateway.db) or"
        " --seen knows; a secured node nothing newer is known of continues in a new key epoch from counter"
        " 0 (frames accepted after the backup can then never be accepted again) and must be told so"
        " (docs/operations.md). The existing gateway.db is kept as gateway.db.pre-restore-<time>.",
        epilog="examples:\n"
        "  sudo systemctl stop lora-gw\n"
        "  sudo lora-gw state restore /mnt/usb/gw.lgwbak --config /etc/lora-gw/gateway.toml\n"
        "  sudo lora-gw state restore gw.lgwbak --config /etc/lora-gw/gateway.toml --seen last-ids.txt",
        formatter_class=ExamplesFormatter,
    )
    rs.add_argument("file", metavar="FILE", help="a backup written by `lora-gw state backup`")
    _passphrase_options(rs, encrypt_option=False)
    rs.add_argument(
        "--seen",
        metavar="PATH",
        help="the last message ids a consumer received (00005101-1234 per line, JSON lines with msg_id,"
        " or NODE=FCNT): those nodes continue after them instead of in a new key epoch (default: none)",
    )
    rs.add_argument(
        "--keep-counters",
        action="store_true",
        help="keep the backup's counters for nodes nothing newer is known of, instead of a new key epoch"
        " (only when no frame was accepted after the backup; default: new key epoch)",
    )
    rs.add_argument(
        "--config-dest",
        metavar="DIR",
        help="also write the backup's config files into DIR (an existing file gets a .restored copy"
        " beside it; default: the config is not written)",
    )
    rs.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    rs.set_defaults(func=cmd_restore, adopt_owner=False)  # root reads FILE; restored files go to the owner


def _passphrase_options(p: argparse.ArgumentParser, encrypt_option: bool) -> None:
    if encrypt_option:
        p.add_argument(
            "--encrypt",
            action="store_true",
            help="encrypt (scrypt + AES-256-GCM); the passphrase from --passphrase-file,"
            f" ${backup.PASSPHRASE_ENV} or a prompt (default: not encrypted, still 0600)",
        )
    p.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="read the passphrase from the first line of PATH, chmod 600; implies encryption on backup"
        f" (default: ${backup.PASSPHRASE_ENV}, else a prompt)",
    )


def _passphrase(args: argparse.Namespace, confirm: bool) -> bytes:
    if args.passphrase_file:
        return backup.read_passphrase_file(args.passphrase_file)
    env = os.environ.get(backup.PASSPHRASE_ENV)
    if env:
        return env.encode()
    if not sys.stdin.isatty():
        raise GatewayError(
            f"state: a passphrase is needed: give --passphrase-file or ${backup.PASSPHRASE_ENV}", "passphrase"
        )
    first = getpass.getpass("backup passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise GatewayError("state: the passphrases differ", "passphrase")
    if not first:
        raise GatewayError("state: an empty passphrase protects nothing", "passphrase")
    return first.encode()


def _service_owner(state: Path) -> tuple[int, int] | None:
    """Whom root restores a state directory for: its owner, else the installed service's ``User=``."""
    if os.geteuid() != 0:
        return None
    if state.is_dir():
        st = state.stat()
        return None if st.st_uid == 0 else (st.st_uid, st.st_gid)
    from gateway.cli.service_info import installed

    svc = installed()
    if svc is None or not svc.user:
        return None
    import pwd

    try:
        pw = pwd.getpwnam(svc.user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


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


def cmd_backup(args: argparse.Namespace) -> int:
    files = {}
    if args.config:
        from gateway.service.config import config_files, load_config

        files = config_files(load_config(args.config))
    encrypt = args.encrypt or bool(args.passphrase_file)
    passphrase = _passphrase(args, confirm=True) if encrypt else None
    state = paths.state_dir(args.state_dir, create=False)
    r = backup.backup(state, Path(args.file), files, passphrase, force=args.force)
    doc = {
        "file": str(r.path),
        "nodes": r.nodes,
        "outbox_rows": r.outbox_rows,
        "model_files": r.models,
        "config_files": sorted(files),
        "encrypted": r.encrypted,
        "service_running": r.service_running,
        "bytes": r.bytes,
    }
    if args.json:
        print(json.dumps(doc))
        return 0
    print(
        f"backed up {state} to {r.path} ({r.bytes} bytes, mode 0600{', encrypted' if r.encrypted else ''}):"
        f" {r.nodes} nodes, {r.outbox_rows} outbox rows, {r.models} model files, config: "
        + (", ".join(sorted(files)) or "none (add --config to include it)")
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    path = Path(args.file)
    passphrase = None
    if path.is_file() and backup.is_encrypted(path):
        passphrase = _passphrase(args, confirm=False)
    seen = None
    if args.seen:
        try:
            seen = backup.parse_seen(Path(args.seen).read_text())
        except OSError as exc:
            raise GatewayError(f"--seen {args.seen}: {exc.strerror or exc}", "bad_input") from None
    keyed: frozenset[int] = frozenset()
    if args.config:  # nodes keyed by the secrets file are secured even where their registry row has no key
        from gateway.service.config import load_config

        keyed = frozenset(load_config(args.config).node_keys)
    state = paths.state_dir(args.state_dir, create=False)
    r = backup.restore(
        path, state, passphrase, seen, not args.keep_counters, args.config_dest, keyed, _service_owner(state)
    )
    if args.json:
        print(
            json.dumps(
                {
                    "database": str(r.database),
                    "backup_created_utc": r.created_utc,
                    "nodes": [
                        {
                            "node_id": f"0x{n.node_id:08x}",
                            "next_fcnt": n.next_fcnt,
                            "key_epoch": n.key_epoch,
                            "counter": n.how,
                            "backup_next_fcnt": n.before,
                        }
                        for n in r.nodes
                    ],
                    "set_aside": [str(p) for p in r.set_aside],
                    "model_files": r.models,
                    "outbox_rows": r.outbox_rows,
                    "config_written": [str(p) for p in r.config_written],
                }
            )
        )
        return 0
    print(
        f"restored {r.database} from the backup of {r.created_utc}: {len(r.nodes)} nodes, {r.outbox_rows}"
        f" outbox rows, {r.models} model files"
    )
    for p in r.set_aside:
        print(f"  set aside: {p}")
    for p in r.config_written:
        print(f"  config written: {p}")
    for n in r.tell_nodes:
        print(
            f"  node 0x{n.node_id:08x}: new key epoch {n.key_epoch} from counter 0 — tell the node"
            f" (its frames of the old epoch are refused from now on)"
        )
    return 0
