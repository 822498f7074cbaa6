"""Generation and gap-filling benchmark: does synthetic telemetry look like the held-out real one,
and does gap filling beat linear interpolation?

Data: the codec bench's data sets (``bench`` extra), with their time stamps. Each series is cut
into 24 equal blocks (``--blocks``); the model is trained (``train_to_size``, 16 samples per frame, with the
time column) on the even blocks and measured on the odd ones, so train and test see the
same seasons but never the same samples. Generation: four runs per held-out block, each from the
block's first time and as long as it (the same times of day and year as the real samples; four,
so the figures describe the generator rather than one short draw of slow weather), seed 1.
Statistics are compared per channel; autocorrelations use pairs within one block.
Cross-channel correlations, as a user reads "within 0.15": the correlation matrix of all generated
samples against that of all held-out samples (each over the whole set, so the daily and annual
cycles the channels share count, as they do in what a user sees), and the worst pair's absolute
difference; not a per-block average. Filling: gaps
of 6–16 whole rows (at least 48 known rows apart) cut out of the test blocks, filled by the
model and by linear interpolation; mean absolute error normalised by each channel's standard
deviation, averaged over channels.
"Pinned": per channel, the share of samples at or past the model's range limit (``lo``/``hi``: the
schema's min/max, else the training extremes), generated minus real held-out, in points.
``reference_real_train_blocks`` holds the same statistics of the real training blocks against
the held-out ones: how far apart the two halves of the real data already are.

    python bench/generate.py [--json] [--datasets greensboro,glucose,daphnet,isig,sst] [--seed 1]
        [--max-bytes N] [--max-gen-bytes N] [--blocks 24]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from bench.codec import DATASETS as CODEC_DATASETS
from gateway.codec import Schema, train_to_size
from gateway.codec.fill import fill_series
from gateway.codec.generate import SLOTS, clock_of, generate, hours_of, parse_times, time_model

BLOCKS = 24  # 24 blocks of ~15 days: both halves cover every season (see docs/codec.md)
GEN_FACTOR = 4  # generated samples per held-out one: the generator's statistics, not one short draw
DAILY_R2 = 0.05  # a channel "has a daily cycle" when its hour profile explains ≥ 5 % of its variance


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def greensboro() -> tuple[Schema, np.ndarray, list[str]]:
    # A TMY year joins months of different years: stamp it as one year of hourly local time.
    schema, q = CODEC_DATASETS["greensboro"]()
    t0 = datetime.fromisoformat("1990-01-01T01:00:00-05:00")
    return schema, q, [(t0 + timedelta(hours=i)).isoformat() for i in range(len(q))]


def glucose() -> tuple[Schema, np.ndarray, list[str]]:
    from bokeh_sampledata.glucose import data

    schema, q = CODEC_DATASETS["glucose"]()
    return schema, q, [t.isoformat() for t in data.index]


def daphnet() -> tuple[Schema, np.ndarray, list[str]]:
    import aeon
    import pandas as pd

    path = os.path.join(
        os.path.dirname(aeon.__file__), "datasets", "data", "Daphnet_S06R02E0", "S06R02E0.csv"
    )
    df = pd.read_csv(path)
    schema, q = CODEC_DATASETS["daphnet"]()
    return schema, q, [t.replace(" ", "T") for t in df["timestamp"].astype(str)]


def isig() -> tuple[Schema, np.ndarray, list[str]]:
    from bokeh_sampledata.glucose import data

    schema, q = CODEC_DATASETS["isig"]()
    return schema, q, [t.isoformat() for t in data.index]


def sst() -> tuple[Schema, np.ndarray, list[str]]:
    from bokeh_sampledata.sea_surface_temperature import sea_surface_temperature as df

    schema, q = CODEC_DATASETS["sst"]()
    return schema, q, [t.isoformat() for t in df.index]


LOADERS: dict[str, Callable[[], tuple[Schema, np.ndarray, list[str]]]] = {
    "greensboro": greensboro,
    "glucose": glucose,
    "daphnet": daphnet,
    "isig": isig,
    "sst": sst,
}
assert set(LOADERS) == set(CODEC_DATASETS), "keep in step with bench/codec.py's data sets"


def _autocorr(blocks: list[np.ndarray], lag: int, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    num = np.zeros(len(mean))
    cnt = 0
    for b in blocks:
        if len(b) > lag:
            a = (b[lag:] - mean) / sd
            c = (b[:-lag] - mean) / sd
            num += (a * c).sum(axis=0)
            cnt += len(a)
    return num / max(cnt, 1)


def _hour_profile(x: np.ndarray, hours: np.ndarray) -> np.ndarray:
    b = np.rint(hours).astype(np.int64) % SLOTS
    return np.stack(
        [x[b == s].mean(axis=0) if (b == s).any() else np.full(x.shape[1], np.nan) for s in range(SLOTS)]
    )


def _gaps(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    out, pos = [], int(rng.integers(24, 48))
    while True:
        length = int(rng.integers(6, 17))
        if pos + length + 24 >= n:
            return out
        out.append((pos, length))
        pos += length + 48 + int(rng.integers(0, 48))


def run_one(
    name: str, schema: Schema, q: np.ndarray, times: list[str], seed: int, max_bytes: int = 4096,
    max_gen_bytes: int = 16384,
    blocks: int = BLOCKS,
) -> dict[str, object]:
    c = len(schema)
    edges = np.linspace(0, len(q), blocks + 1).astype(int)
    train_idx = np.concatenate([np.arange(edges[i], edges[i + 1]) for i in range(0, blocks, 2)])
    test_blocks = [(edges[i], edges[i + 1]) for i in range(1, blocks, 2)]
    t0 = time.perf_counter()
    model, data = train_to_size(
        q[train_idx], schema, 16, times=[times[i] for i in train_idx], max_bytes=max_bytes,
        max_gen_bytes=max_gen_bytes,
    )
    train_s = time.perf_counter() - t0
    tm = time_model(model)
    secs, first = parse_times(times, name)
    real = [q[a:b].astype(np.float64) for a, b in test_blocks]
    real_all = np.concatenate(real)
    real_hours = np.concatenate([hours_of(first, secs[a:b]) for a, b in test_blocks])
    # GEN_FACTOR generated runs per held-out block, each from the block's first time and as long
    # as it: the same times of day and of year as the real data they are compared with
    rng = np.random.default_rng(seed)
    gen_blocks, gen_hours_l = [], []
    for a, b in test_blocks:
        start = datetime.fromisoformat(times[a])
        for _ in range(GEN_FACTOR):
            if tm is not None:
                x, gen_times = generate(model, b - a, rng, start=start)
                assert gen_times is not None
                gsecs, gfirst = parse_times(gen_times, "generated")
            else:  # no room for the time structure: the older generator, stamped at the data's interval
                x = model.generate(b - a, rng)
                gsecs, gfirst = secs[a:b] - secs[a], start
            gen_blocks.append(x.astype(np.float64))
            gen_hours_l.append(hours_of(gfirst, gsecs))
    gen = np.concatenate(gen_blocks)
    gen_hours = np.concatenate(gen_hours_l)
    n = len(gen)
    rm, rs = real_all.mean(axis=0), real_all.std(axis=0)
    gm, gs = gen.mean(axis=0), gen.std(axis=0)
    safe = np.where(rs > 0, rs, 1.0)
    mean_dev = np.abs(gm - rm) / safe
    sd_ratio = gs / safe
    ac = {}
    for lag in (1, 24):
        r_ac = _autocorr(real, lag, rm, safe)
        g_ac = _autocorr(gen_blocks, lag, gm, np.where(gs > 0, gs, 1.0))
        ac[lag] = (r_ac, g_ac)
    rcorr = np.corrcoef(real_all.T) if c > 1 else np.ones((1, 1))
    gcorr = np.corrcoef(gen.T) if c > 1 else np.ones((1, 1))
    off = ~np.eye(c, dtype=bool)
    cross_dev = float(np.nanmax(np.abs(rcorr - gcorr)[off])) if c > 1 else 0.0
    rprof, gprof = _hour_profile(real_all, real_hours), _hour_profile(gen, gen_hours)
    r2 = np.nanvar(rprof, axis=0) / np.maximum(rs**2, 1e-12)
    daily = r2 >= DAILY_R2
    prof_corr = [
        float(np.corrcoef(rprof[:, ch], gprof[:, ch])[0, 1]) if daily[ch] else None for ch in range(c)
    ]
    # Reference: the same comparison for the real training blocks against the held-out ones —
    # how far the test data lie from anything learned from the training data.
    train_blocks = [q[edges[i] : edges[i + 1]].astype(np.float64) for i in range(0, blocks, 2)]
    tr_all = np.concatenate(train_blocks)
    tm_, ts_ = tr_all.mean(axis=0), tr_all.std(axis=0)
    ref = {
        "mean_dev_sd": np.abs(tm_ - rm) / safe,
        "sd_ratio": ts_ / safe,
        "lag1_autocorr": _autocorr(train_blocks, 1, tm_, np.where(ts_ > 0, ts_, 1.0)),
        "lag24_autocorr": _autocorr(train_blocks, 24, tm_, np.where(ts_ > 0, ts_, 1.0)),
    }
    tr_hours = np.concatenate([hours_of(first, secs[edges[i] : edges[i + 1]]) for i in range(0, blocks, 2)])
    tprof = _hour_profile(tr_all, tr_hours)
    ref["hour_profile_corr"] = [
        float(np.corrcoef(rprof[:, ch], tprof[:, ch])[0, 1]) if daily[ch] else None for ch in range(c)
    ]
    ref_cross = float(np.nanmax(np.abs(rcorr - np.corrcoef(tr_all.T))[off])) if c > 1 else 0.0
    lo, hi = model.params.lo, model.params.hi
    at_real = ((real_all <= lo) | (real_all >= hi)).mean(axis=0)
    at_gen = ((gen <= lo) | (gen >= hi)).mean(axis=0)
    pinned_excess = 100 * (at_gen - at_real)
    ref["pinned_excess_pct"] = 100 * (((tr_all <= lo) | (tr_all >= hi)).mean(axis=0) - at_real)

    # gap filling on the test blocks: whole rows removed
    rng = np.random.default_rng(seed + 1)
    err_model = np.zeros(c)
    err_lin = np.zeros(c)
    count = 0
    for (a, b), blk in zip(test_blocks, real, strict=True):
        clock = clock_of(first, secs[a:b])
        x = blk.copy()
        gaps = _gaps(len(blk), rng)
        for pos, length in gaps:
            x[pos : pos + length] = np.nan
        filled, _ = fill_series(model, x, clock)
        t = np.arange(len(blk))
        known = ~np.isnan(x[:, 0])
        lin = np.stack([np.interp(t, t[known], x[known, ch]) for ch in range(c)], axis=1)
        for pos, length in gaps:
            sl = slice(pos, pos + length)
            err_model += np.abs(filled[sl] - blk[sl]).sum(axis=0)
            err_lin += np.abs(lin[sl] - blk[sl]).sum(axis=0)
            count += length
    mae_model = err_model / count / safe
    mae_lin = err_lin / count / safe
    fill_ratio = float(mae_model.mean() / mae_lin.mean())

    def year() -> None:
        model.generate(8760, np.random.default_rng(0))

    year()
    reps = [time.perf_counter()]
    for _ in range(3):
        year()
        reps.append(time.perf_counter())
    year_s = min(np.diff(reps))

    def r(a: object, k: int = 3) -> object:
        return [None if v is None else round(float(v), k) for v in a]  # type: ignore[union-attr]

    result = {
        "dataset": name,
        "channels": list(schema.names),
        "train_samples": len(train_idx),
        "test_samples": len(real_all),
        "generated_samples": n,
        "interval_s": None if tm is None else tm.interval,
        "lags": None if tm is None else list(tm.lags),
        "weight_file_bytes": len(data),
        "generation_metadata": tm is not None,
        "activity_buckets": model.params.buckets,
        "cross_channel_lags": None
        if tm is None
        else sum(bool(np.any(a - np.diag(np.diag(a)))) for a in tm.ar),
        "train_s": round(train_s, 2),
        "mean_dev_sd": r(mean_dev),
        "sd_ratio": r(sd_ratio),
        "lag1_autocorr_real": r(ac[1][0]),
        "lag1_autocorr_gen": r(ac[1][1]),
        "lag24_autocorr_real": r(ac[24][0]),
        "lag24_autocorr_gen": r(ac[24][1]),
        "cross_corr_max_dev": round(cross_dev, 3),
        "daily_r2_real": r(r2),
        "hour_profile_corr": r(prof_corr),
        "at_limit_pct_real": r(100 * at_real, 2),
        "at_limit_pct_gen": r(100 * at_gen, 2),
        "pinned_excess_pct": r(pinned_excess, 2),
        "fill_gaps": count,
        "fill_mae_sd_model": r(mae_model),
        "fill_mae_sd_linear": r(mae_lin),
        "fill_ratio_vs_linear": round(fill_ratio, 3),
        "generate_8760_s": round(float(year_s), 4),
        "blocks": blocks,
        "reference_real_train_blocks": {
            **{k: r(v) for k, v in ref.items()},
            "cross_corr_max_dev": round(ref_cross, 3),
        },
    }
    checks = {
        "mean_within_0.25_sd": bool(np.all(mean_dev <= 0.25)),
        "sd_within_20pct": bool(np.all(np.abs(sd_ratio - 1) <= 0.2)),
        "lag1_within_0.1": bool(np.all(np.abs(ac[1][0] - ac[1][1]) <= 0.1)),
        "lag24_within_0.1": bool(np.all(np.abs(ac[24][0] - ac[24][1]) <= 0.1)),
        "cross_corr_within_0.15": bool(cross_dev <= 0.15),
        "hour_profile_corr_ge_0.9": all(v is None or v >= 0.9 for v in prof_corr),
        "pinned_le_1pct": bool(np.all(pinned_excess <= 1.0)),
        "fill_le_0.8x_linear": bool(fill_ratio <= 0.8),
        "year_hourly_under_1s": bool(year_s < 1.0),
    }
    result["targets_met"] = checks
    _say(f"{name}: fill {fill_ratio:.3f}× linear, {sum(checks.values())}/{len(checks)} targets met")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--datasets", default=",".join(LOADERS), help="comma-separated (default: all)")
    ap.add_argument("--seed", type=int, default=1, help="generation seed (default 1)")
    ap.add_argument(
        "--max-bytes", type=int, default=4096, help="weight file limit for training (default 4096)"
    )
    ap.add_argument(
        "--max-gen-bytes", type=int, default=16384, help="time structure budget in bytes (default 16384)"
    )
    ap.add_argument("--blocks", type=int, default=BLOCKS, help=f"interleaved blocks (default {BLOCKS})")
    args = ap.parse_args(argv)
    results = []
    for name in args.datasets.split(","):
        _say(f"loading {name}")
        schema, q, times = LOADERS[name]()
        results.append(
            run_one(name, schema, q, times, args.seed, args.max_bytes, args.max_gen_bytes, args.blocks)
        )
    targets = {
        key: all(r["targets_met"][key] for r in results)  # type: ignore[index]
        for key in results[0]["targets_met"]  # type: ignore[union-attr]
    }
    doc = {"benchmark": "generate", "results": results, "targets_met": targets}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for r in results:
            print(json.dumps(r))
        print(json.dumps(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
