"""``lora-gw history export|stats``: the telemetry history the gateway keeps (gateway.sinks.history)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from gateway import paths
from gateway.codec import ModelStore
from gateway.codec.csvio import write_csv
from gateway.frames.registry import NodeRegistry, parse_node_ref
from gateway.sinks.history import HistoryError, HistoryReader
from gateway.sinks.history_export import choose_model, export


def parse_time(text: str, option: str) -> int:
    """ISO 8601 (``2026-03-01``, ``2026-03-01T12:00``, with ``Z`` or an offset; naive means UTC) → Unix ms."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(
            f"{option} {text!r} is not an ISO 8601 date or time (e.g. 2026-03-01T12:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _iso(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(args: argparse.Namespace) -> int | None:
    if args.node is None:
        return None
    nid = parse_node_ref(args.node)
    if nid is not None:
        return nid
    with NodeRegistry(paths.db_path(args.state_dir)) as registry:
        return registry.find(args.node).node_id


def _model_id(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit() or not 0 <= int(text) <= 15:
        raise HistoryError(f"--model {text!r} is not a model id 0..15")
    return int(text)


def cmd_export(args: argparse.Namespace) -> int:
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    node = _node(args)
    with HistoryReader(paths.db_path(args.state_dir)) as reader:
        mid = choose_model(reader, _model_id(args.model))
        result = export(
            reader,
            ModelStore(paths.state_dir(args.state_dir)),
            mid,
            node_id=node,
            since_ms=since,
            until_ms=until,
        )
    if not result.frames:
        raise HistoryError(f"history: no frames of model {mid} match")
    q, times, _nodes = result.concatenated()
    write_csv(args.out, result.model.schema, q, times)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items()))
    if args.out != "-":
        print(
            f"wrote {args.out}: {len(q)} samples from {result.frames} frames of {len(result.series)} node(s),"
            f" model {mid} (schema of {result.model.key})" + (f"; skipped {skipped}" if skipped else "")
        )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with HistoryReader(paths.db_path(args.state_dir)) as reader:
        stats = reader.stats(_model_id(args.model))
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"rows        {stats['rows']}")
    print(f"nodes       {stats['nodes']}")
    print(f"span        {_iso(stats['first_ms'])} .. {_iso(stats['last_ms'])} ({stats['span_s']} s)")  # type: ignore[arg-type]
    print(f"size        {stats['size_bytes']} bytes ({stats['payload_bytes']} of payload)")
    for m in stats["models"]:  # type: ignore[attr-defined]
        print(f"model {m['model']:8s} {m['rows']} rows from {m['nodes']} node(s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history",
        help="the telemetry history the gateway keeps: export it for training, show its size",
        description="The learned-model frames the gateway accepted, kept in the state database\n"
        "([history] enabled, retention_days, max_mb), decoded with the exact model version that\n"
        "verified each frame.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="history_command", metavar="ACTION")
    sub.required = True
    s = sub.add_parser(
        "export",
        help="write the history of one model as a CSV that `model train` reads as it is",
        description="Write a CSV: a time column (UTC ISO 8601), a node column and the model's channels,\n"
        "one node's series after the other, each in time order.",
        epilog="examples:\n"
        "  lora-gw history export --model 4 --out history.csv\n"
        "  lora-gw history export --model 4 --node weather-1 --since 2026-03-01 --until 2026-05-01 \\\n"
        "      --out spring.csv\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--node", help="only this node: id (decimal or 0x-hex) or name (default: every node)")
    s.add_argument("--model", metavar="ID", help="model id 0..15 (default: the only one in the history)")
    s.add_argument(
        "--since", metavar="ISO", help="from this UTC time on, inclusive (default: the oldest row)"
    )
    s.add_argument("--until", metavar="ISO", help="up to this UTC time, exclusive (default: the newest row)")
    s.add_argument(
        "--out", required=True, metavar="CSV", help="CSV to write, required (- for standard output)"
    )
    s.set_defaults(func=cmd_export)
    s = sub.add_parser(
        "stats",
        help="rows, nodes, time span and size of the history",
        epilog="examples:\n  lora-gw history stats\n  lora-gw history stats --model 4 --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--model", metavar="ID", help="only this model id (default: all)")
    s.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    s.set_defaults(func=cmd_stats)
