"""``lora-gw model``: train, evaluate and run codec models; manage the installed weight files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gateway.codec import ModelStore, Schema, load_weights
from gateway.codec.baselines import lpp_bytes_per_sample, sprintz_frame_bytes
from gateway.codec.csvio import read_csv, write_csv
from gateway.codec.errors import DataError, PayloadError, StoreError
from gateway.codec.model import MAX_SAMPLES, Model
from gateway.codec.store import parse_ref
from gateway.codec.train import measure, train_to_size
from gateway.paths import state_dir


def _frames(q: np.ndarray, n: int) -> list[np.ndarray]:
    """Frames of n samples; the tail becomes one shorter frame, as a node would send it."""
    return [q[i : i + n] for i in range(0, len(q), n)]


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    schema = Schema.load(args.schema)
    q, _ = read_csv(args.data, schema)
    _progress(f"read {len(q)} samples × {len(schema)} channels from {args.data}")
    model, _data = train_to_size(
        q,
        schema,
        args.samples_per_frame,
        max_bytes=args.max_bytes,
        model_id=args.model_id,
        version=args.version,
        name=args.name or Path(args.out).stem,
        progress=_progress,
    )
    model.meta["training"]["source"] = Path(args.data).name
    from gateway.codec.weights import save

    size = save(model, args.out)
    bps = model.meta["metrics"]["bytes_per_sample"]
    print(f"wrote {args.out}: model {model.key}, {size} bytes, {bps} bytes/sample on training data")
    return 0


def evaluate(model: Model, q: np.ndarray) -> dict[str, object]:
    frames = _frames(q, model.samples_per_frame)
    payloads = [model.encode(f) for f in frames]
    decoded = model.decode_many(payloads)
    lossless = all(np.array_equal(a, b) for a, b in zip(frames, decoded, strict=True))
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
    model = load_weights(args.model)
    q, _ = read_csv(args.data, model.schema)
    result = evaluate(model, q)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:26s} {value}")
    return 0 if result["lossless"] else 1


def _encode(args: argparse.Namespace) -> int:
    model = load_weights(args.model)
    q, _ = read_csv(args.data, model.schema)
    try:
        with open(args.out, "w", encoding="ascii") as fh:
            for frame in _frames(q, model.samples_per_frame):
                fh.write(model.encode(frame).hex() + "\n")
    except OSError as exc:
        raise DataError(f"cannot write {args.out}: {exc.strerror}") from None
    return 0


def _decode(args: argparse.Namespace) -> int:
    model = load_weights(args.model)
    try:
        lines = Path(args.frames).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {args.frames}: {exc}") from None
    payloads = []
    for i, line in enumerate(lines, start=1):
        try:
            payloads.append(bytes.fromhex(line))
        except ValueError:
            raise PayloadError(f"{args.frames}: line {i} is not hex") from None
    rows = model.decode_many(payloads)
    q = np.concatenate(rows) if rows else np.zeros((0, len(model.schema)), dtype=np.int64)
    write_csv(args.out, model.schema, q)
    return 0


def _generate(args: argparse.Namespace) -> int:
    model = load_weights(args.model)
    if args.samples < 1:
        raise DataError("--samples must be at least 1")
    q = model.generate(args.samples, np.random.default_rng(args.seed))
    write_csv(args.out, model.schema, q)
    return 0


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(state_dir(args.state_dir))


def _install(args: argparse.Namespace) -> int:
    model = _store(args).install(args.file)
    print(f"installed model {model.key} ({model.meta.get('name')}), now active")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
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
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.target and Path(args.target).is_file():
        model = load_weights(args.target)
        print(f"{args.target}: ok, model {model.key}, sha256 {model.meta['sha256']}")
        return 0
    mid, version = parse_ref(args.target) if args.target else (None, None)
    results = _store(args).verify(mid, version)
    if not results:
        raise StoreError("no installed model matches" if args.target else "no models installed")
    bad = 0
    for item, err in results:
        print(f"{item.model_id}@{item.version}: {'ok' if err is None else 'FAILED ' + err}")
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
    removed = _store(args).remove(mid, version)
    print(f"removed model {mid} version(s) {', '.join(map(str, removed))}")
    return 0


def _spf(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer") from None
    if not 1 <= n <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_SAMPLES}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="train, evaluate and manage telemetry codec models")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("train", help="train a model on a CSV series")
    s.add_argument("--data", required=True, help="CSV with a header naming the schema's channels")
    s.add_argument("--schema", required=True, help="channel schema TOML")
    s.add_argument("--samples-per-frame", type=_spf, required=True, help="samples per frame (1..64)")
    s.add_argument("--out", required=True, help="weight file to write (.npz)")
    s.add_argument("--model-id", type=int, choices=range(16), default=0, metavar="0..15")
    s.add_argument("--version", type=int, default=1, help="model version (≥ 1)")
    s.add_argument("--name", help="a name for the model (default: the output file's stem)")
    s.add_argument("--max-bytes", type=int, default=4096, help="weight file size limit (default 4096)")
    s.set_defaults(func=_train)

    s = sub.add_parser("eval", help="bytes per sample and a lossless check, beside LPP and Sprintz-style")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_eval)

    s = sub.add_parser("encode", help="write one codec payload per line in hex")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_encode)

    s = sub.add_parser("decode", help="decode hex payloads back to CSV")
    s.add_argument("--model", required=True)
    s.add_argument("--frames", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_decode)

    s = sub.add_parser("generate", help="sample synthetic telemetry from a model")
    s.add_argument("--model", required=True)
    s.add_argument("--samples", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    s.set_defaults(func=_generate)

    s = sub.add_parser("install", help="verify a weight file and install it as the active version")
    s.add_argument("file")
    s.set_defaults(func=_install)

    s = sub.add_parser("list", help="installed models")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_list)

    s = sub.add_parser("verify", help="check SHA-256 of installed models (or of a file)")
    s.add_argument("target", nargs="?", help="FILE, ID or ID@VERSION (default: all installed)")
    s.set_defaults(func=_verify)

    s = sub.add_parser("activate", help="make an installed version active")
    s.add_argument("ref", metavar="ID[@VERSION]")
    s.set_defaults(func=_activate)

    s = sub.add_parser("rollback", help="return to the backup version")
    s.add_argument("id", metavar="ID")
    s.set_defaults(func=_rollback)

    s = sub.add_parser("remove", help="remove an installed version (or all versions of an id)")
    s.add_argument("ref", metavar="ID[@VERSION]")
    s.set_defaults(func=_remove)
