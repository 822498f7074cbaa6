"""``lora-gw model``: train, evaluate and run codec models; manage the installed weight files.

A model is named the same way everywhere: ``ID`` (its active installed version) or ``ID@VERSION``
(an installed version, see ``model list``), or the path of a weight file (``./4`` for a file whose
name looks like a reference). ``-`` as a CSV or frames path means standard input or output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from gateway.codec import ModelStore, Schema, load_weights
from gateway.codec.baselines import lpp_bytes_per_sample, sprintz_frame_bytes
from gateway.codec.csvio import CsvData, load_csv, write_csv
from gateway.codec.errors import DataError, PayloadError, StoreError
from gateway.codec.framesfile import FrameRecord, FramesFile, read_frames, write_frames
from gateway.codec.model import MAX_SAMPLES, Model
from gateway.codec.schema import printable
from gateway.codec.store import parse_ref
from gateway.codec.train import measure, train_to_size
from gateway.paths import state_dir

STDIO = "-"
_REF = re.compile(r"\s*\d+\s*(@\s*\d+\s*)?")
MAX_NAME = 64


def _frames(q: np.ndarray, n: int) -> list[np.ndarray]:
    """Frames of n samples; the tail becomes one shorter frame, as a node would send it."""
    return [q[i : i + n] for i in range(0, len(q), n)]


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _note(msg: str) -> None:
    print(f"lora-gw: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- shared helpers
def is_model_ref(text: str) -> bool:
    """True when ``text`` names an installed model (``ID`` or ``ID@VERSION``) rather than a file."""
    return _REF.fullmatch(text) is not None


def load_model(ref: str, args: argparse.Namespace) -> Model:
    """``--model``: an installed ``ID[@VERSION]`` (``ID`` alone: its active version) or a weight file."""
    if not is_model_ref(ref):
        return load_weights(ref)
    mid, version = parse_ref(ref)
    store = _store(args)
    if version is None:
        model = store.active(mid)
        if model is None:
            raise StoreError(f"model {mid} is not installed (see lora-gw model list)")
        return model
    return store.load(mid, version)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).absolute() == Path(b).absolute()


def check_output(
    out: str,
    inputs: dict[str, str | None],
    *,
    suffix: str | None = None,
    force: bool = False,
    stdout_ok: bool = True,
) -> None:
    """Refuse an output path before any work is done: an input file (never, not even with --force),
    a directory that does not exist, or (without ``force``) a name not ending in ``suffix``."""
    if out == STDIO:
        if not stdout_ok:
            raise DataError("--out - (standard output) is not supported for this file; name a file")
        return
    for option, path in inputs.items():
        if path and path != STDIO and not is_model_ref(path) and _same_file(out, path):
            raise DataError(f"--out {out} is the input file of {option}; refusing to overwrite it")
    parent = Path(out).absolute().parent
    if not parent.is_dir():
        raise DataError(f"cannot write {out}: directory {parent} does not exist")
    if Path(out).is_dir():
        raise DataError(f"cannot write {out}: it is a directory")
    if suffix and not force and not out.endswith(suffix):
        raise DataError(f"--out {out} does not end in {suffix}; use --force to write it there anyway")


def _read_data(args: argparse.Namespace, schema: Schema) -> CsvData:
    data = load_csv(args.data, schema, clip=args.clip, round_=args.round)
    where = "standard input" if args.data == STDIO else args.data
    if data.clipped:
        _note(f"{where}: clipped {data.clipped} value(s) to the schema's range (--clip)")
    if data.rounded:
        _note(f"{where}: rounded {data.rounded} value(s) to the channel's step (--round)")
    return data


# ---------------------------------------------------------------------- train, eval, encode, decode
def _train(args: argparse.Namespace) -> int:
    schema = Schema.load(args.schema)
    check_output(
        args.out,
        {"--data": args.data, "--schema": args.schema},
        suffix=".npz",
        force=args.force,
        stdout_ok=False,
    )
    name = args.name or Path(args.out).stem
    if not printable(name) or len(name) > MAX_NAME:
        raise DataError(
            f"model name {name!r} must be at most {MAX_NAME} characters without control characters"
        )
    if args.version is not None and args.version < 1:
        raise DataError("--version must be at least 1")
    if args.max_gen_bytes < 0:
        raise DataError("--max-gen-bytes must be at least 0")
    init = load_model(args.init, args) if args.init else None
    if init is not None:
        from gateway.cli.model_retrain import check_init

        check_init(args, schema, init)
    data = _read_data(args, schema)
    q, times = data.q, data.times
    _progress(f"read {len(q)} samples × {len(schema)} channels from {args.data}")
    if init is not None:  # incremental: gateway.codec.adapt (issue 18)
        from gateway.cli.model_retrain import train_init

        model = train_init(args, q, schema, init, name)
    else:
        model, _data = train_to_size(
            q,
            schema,
            args.samples_per_frame,
            max_bytes=args.max_bytes,
            max_gen_bytes=args.max_gen_bytes,
            model_id=args.model_id or 0,
            version=args.version or 1,
            name=name,
            progress=_progress,
            times=times,
        )
    model.meta["training"]["source"] = Path(args.data).name if args.data != STDIO else "stdin"
    from gateway.codec.weights import save

    size = save(model, args.out)
    bps = model.meta["metrics"]["bytes_per_sample"]
    print(f"wrote {args.out}: model {model.key}, {size} bytes, {bps} bytes/sample on training data")
    return 0


def evaluate(model: Model, q: np.ndarray) -> dict[str, object]:
    frames = _frames(q, model.samples_per_frame)
    payloads = [model.encode(f) for f in frames]
    decoded = model.decode_many(payloads)
    lossless = len(decoded) == len(frames) and all(
        np.array_equal(a, b) for a, b in zip(frames, decoded, strict=True)
    )
    n = len(q)
    return {
        "model": model.key,
        "samples": n,
        "frames": len(frames),
        "samples_per_frame": model.samples_per_frame,
        "bytes_per_sample": round(sum(map(len, payloads)) / n, 4),
        "lossless": lossless,
        "lpp_bytes_per_sample": float(lpp_bytes_per_sample(model.schema)),
        "sprintz_bytes_per_sample": round(sum(sprintz_frame_bytes(f) for f in frames) / n, 4),
        "mean_abs_residual": measure(model, q)["mean_abs_residual"] if n >= model.samples_per_frame else None,
    }


def _eval(args: argparse.Namespace) -> int:
    model = load_model(args.model, args)
    q = _read_data(args, model.schema).q
    result = evaluate(model, q)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:26s} {value}")
    return 0 if result["lossless"] else 1


def _encode(args: argparse.Namespace) -> int:
    check_output(args.out, {"--data": args.data, "--model": args.model})
    model = load_model(args.model, args)
    data = _read_data(args, model.schema)
    spf = model.samples_per_frame
    frames = _frames(data.q, spf)
    records = []
    for i, frame in enumerate(frames):
        times = None if data.times is None else data.times[i * spf : i * spf + len(frame)]
        records.append(FrameRecord(len(frame), model.encode(frame), times))
    write_frames(args.out, FramesFile(model.key, model.meta["sha256"], records, data.times is not None))
    size = sum(len(r.payload) for r in records)
    empty = sum(not r.payload for r in records)
    _note(
        f"encoded {len(data.q)} samples in {len(records)} frames with model {model.key}: {size} payload bytes"
        + (f", {empty} frame(s) with an empty payload (every sample at the model's base)" if empty else "")
    )
    return 0


def _decode(args: argparse.Namespace) -> int:
    check_output(args.out, {"--frames": args.frames, "--model": args.model})
    model = load_model(args.model, args)
    ff = read_frames(args.frames)
    where = "standard input" if args.frames == STDIO else args.frames
    if ff.sha256 != model.meta.get("sha256"):
        raise PayloadError(
            f"{where} was encoded with model {ff.model} (sha256 {ff.sha256[:12]}), not with "
            f"model {model.key} (sha256 {str(model.meta.get('sha256'))[:12]})"
        )
    rows = model.decode_many([r.payload for r in ff.frames])
    if len(rows) != len(ff.frames):
        raise PayloadError(f"{where}: {len(ff.frames)} frames decoded to {len(rows)}")
    for i, (rec, got) in enumerate(zip(ff.frames, rows, strict=True)):
        if len(got) != rec.samples:
            raise PayloadError(
                f"{where}: frame {i} decodes to {len(got)} samples, the file says {rec.samples}"
            )
    q = np.concatenate(rows) if rows else np.zeros((0, len(model.schema)), dtype=np.int64)
    times = [t for r in ff.frames for t in (r.times or [])] if ff.has_time else None
    write_csv(args.out, model.schema, q, times)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from gateway.codec import generate

    if args.samples < 1:
        raise DataError("--samples must be at least 1")
    start = None
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise DataError(f"--start {args.start!r} is not an ISO 8601 time") from None
    check_output(args.out, {"--model": args.model})
    model = load_model(args.model, args)
    rng = np.random.default_rng(args.seed)
    if generate.time_model(model) is None:  # an older weight file: no interval to stamp rows with
        if start is not None:
            raise DataError(f"model {model.key} was trained without a time column: --start cannot be used")
        q, times = model.generate(args.samples, rng), None
    else:
        q, times = generate.generate(model, args.samples, rng, start)
    write_csv(args.out, model.schema, q, times)
    return 0


def _fill(args: argparse.Namespace) -> int:
    from gateway.codec import fill

    check_output(args.out, {"--model": args.model, "--data": args.data})
    model = load_model(args.model, args)
    table = fill.read_gappy_csv(args.data, model.schema)
    q, estimated, times = fill.fill_table(model, table, "standard input" if args.data == STDIO else args.data)
    fill.write_filled_csv(args.out, model.schema, q, estimated, times)
    inserted = len(q) - table.rows_read
    _note(f"wrote {args.out}: {len(q)} rows, {int(estimated.sum())} estimated ({inserted} inserted)")
    return 0


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(state_dir(args.state_dir))


def _install(args: argparse.Namespace) -> int:
    model = _store(args).install(args.file)
    print(f"installed model {model.key} ({model.meta.get('name')}), now active")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    from gateway.cli.model_retrain import in_use

    used = in_use(args)
    rows = []
    for item in store.installed():
        try:
            meta = store.load(item.model_id, item.version).meta
        except Exception as exc:  # a corrupt file still lists, flagged
            meta = {"error": getattr(exc, "message", str(exc))}
        rows.append(
            {
                "model_id": item.model_id,
                "version": item.version,
                "active": item.active,
                "backup": item.backup,
                "name": meta.get("name"),
                "samples_per_frame": meta.get("samples_per_frame"),
                "channels": [c["name"] for c in meta.get("schema", [])],
                "bytes": item.size_bytes,
                "bytes_per_sample": (meta.get("metrics") or {}).get("bytes_per_sample"),
                "created": meta.get("created"),
                "sha256": meta.get("sha256"),
                "error": meta.get("error"),
                "nodes": [f"{n:08x}" for n in sorted(used.get((item.model_id, item.version), ()))],
            }
        )
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no models installed")
    for r in rows:
        flag = "active" if r["active"] else ("backup" if r["backup"] else "")
        print(
            f"{r['model_id']}@{r['version']:<4} {flag:6s} {r['name'] or '?':20s} "
            f"spf={r['samples_per_frame']} "
            f"{r['bytes']} B  {r['bytes_per_sample']} B/sample  sha256 {str(r['sha256'])[:12]}"
            + (f"  ERROR {r['error']}" if r["error"] else "")
            + (f"  nodes: {len(r['nodes'])} ({_few(r['nodes'])})" if r["nodes"] else "")
        )
    return 0


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (" …" if len(items) > n else "")


def _verify(args: argparse.Namespace) -> int:
    if args.target and not is_model_ref(args.target):
        model = load_weights(args.target)
        print(f"{args.target}: ok, model {model.key}, sha256 {model.meta['sha256']}")
        return 0
    mid, version = parse_ref(args.target) if args.target else (None, None)
    results = _store(args).verify(mid, version)
    if not results:
        raise StoreError("no installed model matches" if args.target else "no models installed")
    bad = 0
    for item, err in results:
        print(f"model {item.model_id}@{item.version}: {'ok' if err is None else 'FAILED ' + err}")
        bad += err is not None
    return 1 if bad else 0


def _activate(args: argparse.Namespace) -> int:
    mid, version = parse_ref(args.ref)
    print(f"model {mid}@{_store(args).activate(mid, version)} is active")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    mid, version = parse_ref(args.id)
    if version is not None:
        raise StoreError("rollback takes a model id without a version")
    print(f"model {mid}@{_store(args).rollback(mid)} is active again")
    return 0


def _remove(args: argparse.Namespace) -> int:
    mid, version = parse_ref(args.ref)
    from gateway.cli.model_retrain import in_use

    removed = _store(args).remove(mid, version, in_use(args, mid), force=args.force)
    print(f"removed model {', '.join(f'{mid}@{v}' for v in removed)}")
    return 0


def _spf(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer") from None
    if not 1 <= n <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_SAMPLES}")
    return n


def _add_csv_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--clip",
        action="store_true",
        help="clip values outside a channel's min..max to the range and count them "
        "(default: refuse the file, naming the row)",
    )
    s.add_argument(
        "--round",
        action="store_true",
        help="round values off a channel's step grid to the nearest step and count them "
        "(default: refuse the file, naming the row)",
    )


def _sub(
    sub: argparse._SubParsersAction, name: str, help_text: str, examples: str, more: str = ""
) -> argparse.ArgumentParser:
    """A sub-command whose --help ends with its examples (``more``: text after the description)."""
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + "." + ("\n\n" + more if more else ""),
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


MODEL_HELP = "the model: a weight file, or an installed ID (its active version) or ID@VERSION"
FRAMES_FORMAT = """\
frames file (JSON lines, UTF-8, one line per frame, none ever left out):
  line 1:  {"format": "lora-gw-frames/1", "model": "4@3", "sha256": "<model's>",
            "frames": F, "samples": N, "time": true|false}
  then:    {"frame": i, "samples": n, "payload": "<hex>", "time": [n cells]}
A frame whose samples all sit at the model's base has the empty payload "".
`model decode` refuses a file whose frame numbers, frame count or sample counts
do not add up, or that another model encoded.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "model",
        help="train, evaluate and manage telemetry codec models",
        description="Train, evaluate and run codec models; manage the installed weight files.\n\n"
        "MODEL is named the same way by every action: ID (its active installed version), ID@VERSION\n"
        "(an installed version, as `model list` prints it) or the path of a weight file (./4 for a\n"
        "file whose name looks like ID). A CSV or frames path of - means standard input or output.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True

    s = _sub(
        sub,
        "train",
        "train a model on a CSV series",
        "  lora-gw model train --data weather.csv --schema weather.toml --samples-per-frame 16 \\\n"
        "      --out weather.npz --model-id 4 --version 1\n"
        "  lora-gw model train --data weather.csv --schema weather.toml --samples-per-frame 8 \\\n"
        "      --out small.npz --max-bytes 2048 --round\n"
        "  lora-gw model train --init 4 --data history.csv --schema weather.toml --samples-per-frame 16 \\\n"
        "      --out weather-v2.npz\n",
    )
    s.add_argument(
        "--data", required=True, help="CSV with a header naming the schema's channels (- for standard input)"
    )
    s.add_argument("--schema", required=True, help="channel schema TOML (see docs/codec.md)")
    s.add_argument(
        "--samples-per-frame",
        type=_spf,
        required=True,
        help=f"samples per frame a node sends (1..{MAX_SAMPLES}; no default)",
    )
    s.add_argument("--out", required=True, help="weight file to write; must end in .npz unless --force")
    s.add_argument(
        "--force",
        action="store_true",
        help="write --out even when its name does not end in .npz (default: off)",
    )
    s.add_argument(
        "--model-id",
        type=int,
        choices=range(16),
        default=None,
        metavar="0..15",
        help="model id (default 0; with --init: the init model's)",
    )
    s.add_argument(
        "--version",
        type=int,
        default=None,
        help="model version, an integer ≥ 1 (default 1; with --init: the init model's version + 1)",
    )
    s.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model's parameters and adapt them to --data (incremental: same schema and"
        " --samples-per-frame, a fraction of a full training's time; --max-bytes does not apply)."
        " A weight file, an installed ID or ID@VERSION (default: train from scratch)",
    )
    s.add_argument(
        "--name", help=f"a name for the model, ≤ {MAX_NAME} characters (default: the output file's stem)"
    )
    s.add_argument(
        "--max-bytes",
        type=int,
        default=4096,
        help="weight file size limit in bytes, without the time structure (default 4096)",
    )
    s.add_argument(
        "--max-gen-bytes",
        type=int,
        default=16384,
        help="bytes the learned time structure may add to the weight file (default 16384)",
    )
    _add_csv_options(s)
    s.set_defaults(func=_train)

    s = _sub(
        sub,
        "eval",
        "bytes per sample and a lossless check, beside LPP and Sprintz-style",
        "  lora-gw model eval --model weather.npz --data weather.csv\n"
        "  lora-gw model eval --model 4@1 --data - --json < today.csv\n",
    )
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--data", required=True, help="CSV with the model's channels (- for standard input)")
    s.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    _add_csv_options(s)
    s.set_defaults(func=_eval)

    s = _sub(
        sub,
        "encode",
        "encode a CSV into a frames file, one codec payload per frame",
        "  lora-gw model encode --model weather.npz --data weather.csv --out weather.frames\n"
        "  lora-gw model encode --model 4 --data weather.csv --out - | head -3\n",
        FRAMES_FORMAT,
    )
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument(
        "--data",
        required=True,
        help="CSV with the model's channels and an optional time column (- for standard input)",
    )
    s.add_argument("--out", required=True, help="frames file to write (- for standard output); format above")
    _add_csv_options(s)
    s.set_defaults(func=_encode)

    s = _sub(
        sub,
        "decode",
        "decode a frames file back to CSV at the schema's resolution",
        "  lora-gw model decode --model weather.npz --frames weather.frames --out back.csv\n"
        "  lora-gw model decode --model 4@1 --frames - --out - < weather.frames\n",
    )
    s.add_argument("--model", required=True, help=MODEL_HELP + "; must be the one that encoded the frames")
    s.add_argument(
        "--frames", required=True, help="frames file written by `model encode` (- for standard input)"
    )
    s.add_argument("--out", required=True, help="CSV to write, \\n line endings (- for standard output)")
    s.set_defaults(func=_decode)

    s = _sub(
        sub,
        "generate",
        "sample synthetic telemetry from a model, with a time column",
        "  lora-gw model generate --model weather.npz --samples 8760 --out year.csv\n"
        "  lora-gw model generate --model 4@2 --samples 96 --start 2026-06-01T00:00:00Z --seed 5 --out -\n",
        "Rows follow the sampling interval, daily cycle and cross-channel dynamics that\n"
        "`model train` learned from its CSV's time column. A model trained without one writes\n"
        "no time column (and refuses --start).",
    )
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--samples", type=int, required=True, help="number of rows to write (≥ 1)")
    s.add_argument("--out", required=True, help="CSV to write, \\n line endings (- for standard output)")
    s.add_argument(
        "--start",
        metavar="ISO",
        help="time of the first row, ISO 8601 (default: the first time in the training data)",
    )
    s.add_argument("--seed", type=int, default=None, help="random seed, an integer (default: fresh each run)")
    s.set_defaults(func=_generate)

    s = _sub(
        sub,
        "fill",
        "fill missing rows and cells of a CSV, marking them in an `estimated` column",
        "  lora-gw model fill --model weather.npz --data station.csv --out station-filled.csv\n"
        "  lora-gw model fill --model 4 --data - --out - < gappy.csv > filled.csv\n",
        "Blank or NaN cells, and the rows a regular time column lacks, get the model's most\n"
        "likely values given the known samples on both sides and in the other channels (the\n"
        "gateway's gap filling uses the same code). Every row of the output has estimated = 1\n"
        "(a cell of it was filled) or 0 (as measured). Models trained without a time column\n"
        "fill blank cells only; weight files from before generation metadata interpolate.",
    )
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument(
        "--data", required=True, help="CSV with the model's channels; blank cells are missing (- for stdin)"
    )
    s.add_argument(
        "--out", required=True, help="CSV to write, with an `estimated` column (- for standard output)"
    )
    s.set_defaults(func=_fill)

    s = _sub(
        sub,
        "install",
        "verify a weight file and install it as the active version",
        "  lora-gw model install weather.npz\n  sudo lora-gw model install /tmp/weather-v2.npz\n",
    )
    s.add_argument("file", metavar="FILE", help="weight file (.npz) written by `model train`")
    s.set_defaults(func=_install)

    s = _sub(sub, "list", "installed models", "  lora-gw model list\n  lora-gw model list --json\n")
    s.add_argument("--json", action="store_true", help="print a JSON array (default: a table)")
    s.set_defaults(func=_list)

    s = _sub(
        sub,
        "verify",
        "check SHA-256 of installed models (or of a file)",
        "  lora-gw model verify\n  lora-gw model verify 4@1\n  lora-gw model verify weather.npz\n",
    )
    s.add_argument(
        "target", nargs="?", metavar="MODEL", help="ID, ID@VERSION or a weight file (default: all installed)"
    )
    s.set_defaults(func=_verify)

    s = _sub(
        sub,
        "activate",
        "make an installed version active",
        "  lora-gw model activate 4@1\n  lora-gw model activate 4\n",
    )
    s.add_argument("ref", metavar="ID[@VERSION]", help="installed model; ID alone: its newest version")
    s.set_defaults(func=_activate)

    s = _sub(sub, "rollback", "return to the backup version", "  lora-gw model rollback 4\n")
    s.add_argument("id", metavar="ID", help="model id 0..15")
    s.set_defaults(func=_rollback)

    s = _sub(
        sub,
        "remove",
        "remove an installed version (or all versions of an id)",
        "  lora-gw model remove 4@1\n  lora-gw model remove 4\n  lora-gw model remove 4@1 --force\n",
        "A version a node sent within --in-use-days, or the last one a node used, is refused:\n"
        "its frames (arriving, in the outbox, in the history) decode only with exactly that version.",
    )
    s.add_argument("ref", metavar="ID[@VERSION]", help="installed model; ID alone: every version of it")
    s.add_argument(
        "--force", action="store_true", help="remove it even when nodes use it (default: refuse)"
    )
    s.add_argument(
        "--in-use-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="a version a node sent within this many days is in use (default 30, the outbox's max_age_days)",
    )
    s.set_defaults(func=_remove)
    from gateway.cli.model_retrain import register_retrain

    register_retrain(sub, _sub)
