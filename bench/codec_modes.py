"""A bitstream feature side by side with the revision before it, in one process.

Per data set, 16 samples per frame: the model trained as usual and the same training with the
feature switched off: ``--feature modes`` (default), the prediction-mode search (revision 4 against
what revision 3's trainer made), ``--feature lattice``, the value lattices (revision 6 against
revision 5), or ``--feature frameflags``, the lattices' frame flags and lattices that hold for
stretches (revision 7 against revision 6's finder); bytes per sample on the held-out half and frames
per second of batch decoding, single-frame decoding and encoding on 1000 held-out frames (best of
3 rounds, alternating, so both see the same load).

    python bench/codec_modes.py [--datasets isig,glucose] [--feature modes|lattice|frameflags] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.codec import DATASETS
from gateway.codec import lattice

train_module = importlib.import_module("gateway.codec.train")  # the package's `train` is the function


def _without_modes(*args: object) -> tuple[object, ...]:
    """choose_pmode's stand-in: the row and grid it is given, mode 0."""
    row, grid = args[5], args[6]
    return row[0], row[1], int(row[2]), grid, 0  # type: ignore[index, call-overload]


def compare(name: str, n: int = 16, rounds: int = 3, feature: str = "modes") -> dict[str, object]:
    schema, q = DATASETS[name]()
    half = len(q) // 2
    if feature == "lattice":
        models = {"revision6": train_module.train(q[:half], schema, n)}
        finder = lattice.find_all
        lattice.find_all = lambda data, n=None, partial=True: lattice.nothing(data.shape[1])
        try:
            models["revision5"] = train_module.train(q[:half], schema, n)
        finally:
            lattice.find_all = finder
    elif feature == "frameflags":
        # Revision 7 against the same training with revision 6's finder: lattices over all the
        # readings only, per-reading flags only.
        models = {"revision7": train_module.train(q[:half], schema, n)}
        finder = lattice.find_all
        lattice.find_all = lambda data, n=None, partial=True: finder(data)
        try:
            models["revision6"] = train_module.train(q[:half], schema, n)
        finally:
            lattice.find_all = finder
    else:
        models = {"revision4": train_module.train(q[:half], schema, n)}
        search = train_module.choose_pmode
        train_module.choose_pmode = _without_modes
        try:
            models["revision3"] = train_module.train(q[:half], schema, n)
        finally:
            train_module.choose_pmode = search
    test = train_module.frames_of(q[half:], n)
    sample = test[:1000]
    out: dict[str, object] = {"dataset": name, "samples_per_frame": n}
    speed: dict[str, list[tuple[float, float, float]]] = {k: [] for k in models}
    for _ in range(rounds):
        for key, m in models.items():
            payloads = m.encode_many(sample)
            t = time.perf_counter()
            m.decode_many(payloads)
            batch = len(payloads) / (time.perf_counter() - t)
            t = time.perf_counter()
            for p in payloads[:300]:
                m.decode(p)
            single = 300 / (time.perf_counter() - t)
            t = time.perf_counter()
            m.encode_many(sample[:300])
            encode = 300 / (time.perf_counter() - t)
            speed[key].append((batch, single, encode))
    for key, m in models.items():
        total = sum(map(len, m.encode_many(test)))
        best = [max(v[i] for v in speed[key]) for i in range(3)]
        out[key] = {
            "bytes_per_sample": round(total / (len(test) * n), 4),
            "pmode": m.params.pmode.tolist(),
            "lattice_channels": int((m.params.vmap[:, 3] != 0).sum()),
            "frame_flag_channels": int((m.params.vframe != 0).sum()),  # type: ignore[union-attr]
            "buckets": m.params.buckets,
            "decode_batch_frames_per_s": round(best[0]),
            "decode_single_frames_per_s": round(best[1]),
            "encode_frames_per_s": round(best[2]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="isig,glucose")
    ap.add_argument("--feature", choices=("modes", "lattice", "frameflags"), default="modes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [compare(name, feature=args.feature) for name in args.datasets.split(",")]
    if args.json:
        print(json.dumps({"benchmark": "codec_modes", "results": results}, indent=2))
    else:
        for r in results:
            print(r)


if __name__ == "__main__":
    main()
