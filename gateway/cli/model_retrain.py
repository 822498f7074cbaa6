"""``lora-gw model train --init`` and ``model retrain``: new model versions from the gateway's history.

``retrain ID`` exports the model's recent history, holds back the most recent part of each node's
series, adapts the active version to the rest (gateway.codec.adapt), scores candidate and active
version on the held-back part and installs the candidate as the next version only when it is
lossless and at least ``--min-gain`` percent smaller. Also the versions nodes use (for ``model list``
and ``model remove``), read from the state database.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

import numpy as np

from gateway import paths
from gateway.codec.adapt import adapt, check_compatible
from gateway.codec.errors import DataError
from gateway.codec.model import Model
from gateway.codec.schema import Schema
from gateway.codec.store import parse_ref
from gateway.sinks.history import HistoryReader, NodeModel, versions_in_use
from gateway.sinks.retrain import retrain_model

DEFAULT_DAYS = 60.0
DEFAULT_MIN_GAIN = 3.0
DEFAULT_HOLDOUT = 20.0
IN_USE_DAYS = 30.0  # model remove --in-use-days: the outbox keeps undelivered frames 30 days by default


class Progress:
    """Progress lines on standard error; with a terminal, one line redrawn with the elapsed time."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f} s] {msg}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------- versions in use
def node_uses(args: argparse.Namespace, model_id: int | None = None) -> list[NodeModel]:
    db = paths.db_path(getattr(args, "state_dir", None))
    if not db.exists():
        return []
    with HistoryReader(db) as reader:
        return reader.node_models(model_id)


def in_use(args: argparse.Namespace, model_id: int | None = None) -> dict[tuple[int, int], list[int]]:
    days = getattr(args, "in_use_days", None)
    window_s = (IN_USE_DAYS if days is None else days) * 86400
    return versions_in_use(node_uses(args, model_id), int(time.time() * 1000), window_s)


# ---------------------------------------------------------------------- train --init
def check_init(args: argparse.Namespace, schema: Schema, init: Model) -> None:
    """Refuse an --init model another schema, frame size or id would not fit (before reading data)."""
    if args.model_id is not None and args.model_id != init.model_id:
        raise DataError(f"--model-id {args.model_id} differs from --init model {init.key}; leave it out")
    if init.schema.names != schema.names or not np.array_equal(init.schema.steps, schema.steps):
        raise DataError(
            f"--init model {init.key} has channels {', '.join(init.schema.names)} (steps"
            f" {', '.join(f'{s:g}' for s in init.schema.steps)}); --schema differs: incremental training"
            " keeps the schema"
        )
    if args.samples_per_frame != init.samples_per_frame:
        check_compatible(init, np.zeros((0, len(schema)), dtype=np.int64), args.samples_per_frame)


def train_init(args: argparse.Namespace, q: np.ndarray, schema: Schema, init: Model, name: str) -> Model:
    """``model train --init MODEL``: the same schema and frame size, adapted to ``q``."""
    check_init(args, schema, init)
    check_compatible(init, q, args.samples_per_frame)
    progress = Progress()
    model = adapt(init, q, version=args.version, progress=progress)
    progress.done()
    model.meta["name"] = name
    return model


# ---------------------------------------------------------------------- retrain
def retrain(args: argparse.Namespace) -> int:
    mid, version = parse_ref(args.id)
    progress = Progress()
    try:
        out = retrain_model(
            paths.state_dir(args.state_dir),
            mid,
            version,
            days=args.days,
            min_gain_pct=args.min_gain,
            holdout_pct=args.holdout,
            dry_run=args.dry_run,
            activate=not args.stage,
            progress=progress,
        )
    finally:
        progress.done()
    result, init, candidate = out.result, out.init, out.candidate
    if args.report:
        write_report(args.report, init, candidate, result["before"], result["after"])  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result, init, candidate)
        if result["installed"]:
            state = "active" if result["active"] else "staged (inactive)"
            print(
                f"installed model {candidate.key} ({state}); {init.key} is kept for the nodes that use it."
                f" Nodes switch explicitly: reprovision each with {candidate.key} (lora-fw) when ready."
            )
        elif result["better"]:
            print(f"dry run: model {candidate.key} would be installed")
        else:
            print(f"not installed: {result['refused']}")
    return 0 if result["better"] else 1


def print_table(result: dict, init: Model, candidate: Model) -> None:
    before, after = result["before"], result["after"]
    print(
        f"trained on {result['train_samples']} samples from {result['nodes']} node(s)"
        f" in {result['train_s']} s;"
        f" judged on the newest {result['test_samples']} samples (held back)"
    )
    print(f"{'':18s} {init.key + ' (active)':>16s} {candidate.key + ' (candidate)':>18s}")
    print(f"{'bytes/sample':18s} {before['bytes_per_sample']:>16.4f} {after['bytes_per_sample']:>18.4f}")
    for name in init.schema.names:
        b, a = before["channel_bytes_per_sample"][name], after["channel_bytes_per_sample"][name]
        print(f"  {name[:16]:16s} {b:>16.4f} {a:>18.4f}")
    print(f"{'lossless':18s} {str(before['lossless']).lower():>16s} {str(after['lossless']).lower():>18s}")
    print(f"{'gain':18s} {'':>16s} {result['gain_pct']:>17.2f}%  (needed {result['min_gain_pct']:g} %)")


def write_report(path: str, init: Model, candidate: Model, before: dict, after: dict) -> None:
    """Bytes/sample per channel before and after: a PNG bar chart or an HTML page."""
    names = list(init.schema.names)
    b = [float(before["channel_bytes_per_sample"][n]) for n in names]
    a = [float(after["channel_bytes_per_sample"][n]) for n in names]
    if path.endswith(".png"):
        from gateway.diag.png import bar_chart, write_png

        values = [v for pair in zip(b, a, strict=True) for v in pair]
        top = max([*values, 0.1]) * 1.1
        chart = bar_chart(
            [v * 100 for v in values],
            0.0,
            top * 100,
            "0",
            str(len(names)),
            highlight=[i % 2 == 1 for i in range(len(values))],
            grid_step=max(1.0, round(top * 100 / 5)),
        )
        write_png(path, chart)
    elif path.endswith(".html"):
        scale = 300 / max(*b, *a, 1e-9)
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{x:.4f}</td><td>{y:.4f}</td>"
            f"<td><svg width='300' height='24'><rect width='{scale * x:.0f}' height='10'"
            f" fill='#2864c8'/><rect y='12' width='{scale * y:.0f}' height='10'"
            " fill='#d23228'/></svg></td></tr>"
            for n, x, y in zip(names, b, a, strict=True)
        )
        Path(path).write_text(
            "<!doctype html><meta charset='utf-8'><title>lora-gw retrain report</title>"
            f"<h1>Model {init.key} → {candidate.key}</h1>"
            f"<p>bytes/sample on held-back data: {before['bytes_per_sample']} → {after['bytes_per_sample']}"
            f" (lossless: {after['lossless']})</p>"
            f"<table><tr><th>channel</th><th>{init.key}</th><th>{candidate.key}</th><th></th></tr>{rows}</table>",
            encoding="utf-8",
        )
    else:
        raise DataError(f"--report {path}: name a .png or .html file")


def check_report(path: str | None) -> None:
    if path and not (path.endswith(".png") or path.endswith(".html")):
        raise DataError(f"--report {path}: name a .png or .html file")
    if path and not Path(path).absolute().parent.is_dir():
        raise DataError(f"--report {path}: directory {Path(path).absolute().parent} does not exist")


def register_retrain(sub: argparse._SubParsersAction, make) -> None:
    s = make(
        sub,
        "retrain",
        "learn the next version of an installed model from the gateway's own history",
        "  lora-gw model retrain 4 --dry-run\n"
        "  lora-gw model retrain 4 --days 30 --min-gain 5 --report retrain.html\n"
        "  lora-gw model retrain 4@2 --stage --json\n",
        "Exports the model's recent history, holds back the newest part of each node's series, adapts\n"
        "the active version to the rest and compares both on the held-back part. The candidate is\n"
        "installed as the next version only when it is lossless and at least --min-gain smaller; the\n"
        "old version stays installed for the nodes using it (frames are bound to their version).\n"
        "Exit status: 0 installed (or would be, with --dry-run), 1 not better enough.",
    )
    s.add_argument(
        "id", metavar="ID[@VERSION]", help="installed model; ID alone: start from its active version"
    )
    s.add_argument(
        "--days",
        type=float,
        default=DEFAULT_DAYS,
        help=f"history to use, in days back from now (default {DEFAULT_DAYS:g})",
    )
    s.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        metavar="PCT",
        help="install only if bytes/sample drop by at least this many percent"
        f" (default {DEFAULT_MIN_GAIN:g})",
    )
    s.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        metavar="PCT",
        help=f"newest share of each node's series held back to judge, percent (default {DEFAULT_HOLDOUT:g})",
    )
    s.add_argument("--dry-run", action="store_true", help="train and compare, install nothing (default: off)")
    s.add_argument(
        "--stage", action="store_true", help="install the candidate inactive (default: it becomes active)"
    )
    s.add_argument(
        "--report",
        metavar="FILE",
        help="write bytes/sample per channel, before and after: .html (a table with bars) or .png (bar pairs"
        " in schema order, blue the active version, red the candidate, axis in 1/100 bytes/sample)"
        " (default: none)",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    s.set_defaults(func=_retrain_cmd)


def _retrain_cmd(args: argparse.Namespace) -> int:
    check_report(args.report)
    return retrain(args)
