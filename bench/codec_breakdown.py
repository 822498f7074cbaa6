"""Where the learned codec's bits go, and what each modelling step costs against its ideal.

Per data set, frame size and channel (train on the first half, evaluate on the second, as
``bench/codec.py``): the coded bits split into first sample / sample count / later samples /
range-coder termination, and for the later samples a ladder of cross-entropies on the test half,
each learned on the training half, from the issue's bound down to the bits actually spent:

``delta_order0``     first differences, exact values (the bound's term)
``resid_order0``     the model's prediction residuals, exact values (step: the predictor)
``binned_ideal``     one 64-symbol binned table, float probabilities, uniform raw bits (step:
                     bin quantisation)
``binned_4096``      the same table with frequencies quantised to 4096 (step: table quantisation)
``contexts``         the model's activity buckets, each its own table, no grid (step: contexts)
``coded``            the symbols and raw bits the model really sends, grid and jitter included
                     (step: the grid/jitter path)

Bits are totals over the test half divided by its sample count (bits per sample per channel).

    python bench/codec_breakdown.py [--sizes 8,16,32] [--datasets greensboro,glucose,daphnet,isig,sst]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

from bench.codec import DATASETS, _say, order0_bound_bytes
from gateway.codec import lattice, tables, train_to_size
from gateway.codec.model import GRID_ONE, grid_split, jitter_phase
from gateway.codec.rangecoder import PROB_TOTAL
from gateway.codec.train import frames_of


def xent(train_vals: np.ndarray, test_vals: np.ndarray) -> float:
    """Cross-entropy (bits, total) of test values under the training histogram (unseen: ½ count)."""
    vals, counts = np.unique(train_vals, return_counts=True)
    idx = np.searchsorted(vals, test_vals)
    idx = np.minimum(idx, len(vals) - 1)
    seen = vals[idx] == test_vals
    p = np.where(seen, counts[idx], 0.5) / counts.sum()
    return float(-np.log2(p).sum())


def binned(train_r: np.ndarray, test_r: np.ndarray, quantise: bool) -> float:
    """One zigzag-binned table learned on train (best shift there), bits on test incl. raw bits."""
    if len(train_r) == 0 or len(test_r) == 0:
        return 0.0
    best = None
    for k in range(tables.MAX_SHIFT + 1):
        sym, _, nraw = tables.to_symbols(train_r, k)
        counts = np.bincount(sym, minlength=tables.NSYM).astype(np.float64)
        p = tables.quantise_freqs(counts) / PROB_TOTAL if quantise else np.maximum(counts, 0.5) / counts.sum()
        cost = float(-(counts * np.log2(p)).sum() + nraw.sum())
        if best is None or cost < best[0]:
            best = (cost, k, p)
    _, k, p = best
    sym, _, nraw = tables.to_symbols(test_r, k)
    return float(-np.log2(p[sym]).sum() + nraw.sum())


def coded_bits(model, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel and sample position: the bits the model's symbols and raw bits cost."""
    p = model.params
    frames, jit = model.to_index(frames)  # lattice channels are coded as indices (revision 6)
    pred, table = model.predict_all(frames)
    c = p.channels
    chan = np.broadcast_to(np.arange(c), frames.shape)
    k = p.shift[chan, table]
    grid = p.grid[chan]
    m, e = grid_split(frames - pred, grid)
    sym, _, nraw = tables.to_symbols(m, k)
    nraw = nraw.astype(np.float64)
    win = p.shift[:, 0] >= tables.WINDOW
    if win.any():
        s0, _, n0, _, nt0 = tables.first_to_symbols(m[:, 0], k[:, 0] - tables.WINDOW)
        sym[:, 0] = np.where(win, s0, sym[:, 0])
        nraw[:, 0] = np.where(win, n0 + nt0, nraw[:, 0])
    sbits = -np.log2(p.freq[chan, table, sym] / PROB_TOTAL)
    jsym, _, jn = tables.to_symbols(e, 0)
    jf = p.jfreq[chan, jitter_phase(pred, m, grid, p.pmode[chan]), jsym]
    jbits = np.where(grid != GRID_ONE, -np.log2(jf / PROB_TOTAL) + jn, 0.0)
    mapped = p.vmap[chan, 3] != lattice.NONE
    foff = p.vmap[chan, 4]
    gaps = lattice.gap(frames, p.vmap)
    lbits = np.where(
        jit != 0,
        -np.log2(np.maximum(foff, 1) / PROB_TOTAL) + lattice.bit_length(gaps - 2),
        -np.log2((PROB_TOTAL - foff) / PROB_TOTAL),
    )
    return {"symbol": sbits, "raw": nraw, "jitter": jbits, "lattice": np.where(mapped, lbits, 0.0)}


def breakdown(name: str, q: np.ndarray, n: int) -> dict[str, object]:
    half = len(q) // 2
    train_q, test_q = q[:half], q[half:]
    schema = DATASETS[name]()[0]
    model, _ = train_to_size(train_q, schema, n, max_bytes=4096)
    p = model.params
    frames = frames_of(test_q, n)
    tr_frames = np.concatenate([frames_of(train_q[s:], n) for s in range(0, n, max(1, n // 4))])
    samples = frames.shape[0] * n
    payloads = model.encode_many(frames)
    total_bits = 8.0 * sum(map(len, payloads))
    bits = coded_bits(model, frames)
    ideal_total = sum(float(v.sum()) for v in bits.values())
    count_bits = float(-np.log2((PROB_TOTAL - 64) / PROB_TOTAL)) * len(frames)
    k_test, k_train = model.to_index(frames)[0], model.to_index(tr_frames)[0]
    pred_test, tab_test = model.predict_all(k_test)
    pred_train, tab_train = model.predict_all(k_train)
    res_test, res_train = k_test - pred_test, k_train - pred_train
    chans = []
    for ch in range(p.channels):
        first = sum(float(v[:, 0, ch].sum()) for v in bits.values())
        later = sum(float(v[:, 1:, ch].sum()) for v in bits.values())
        d_train = np.diff(train_q[:, ch])
        d_test = np.diff(frames[:, :, ch], axis=1).ravel()
        rtr = res_train[:, 1:, ch].ravel()
        rte = res_test[:, 1:, ch].ravel()
        ladder = {
            "delta_order0": xent(d_train, d_test),
            "resid_order0": xent(rtr, rte),
            "binned_ideal": binned(rtr, rte, False),
            "binned_4096": binned(rtr, rte, True),
        }
        # Contexts without the grid: each of the model's tables (position 1, activity buckets, as the
        # model picks them: with activity weights too) learned on the training residuals with its own
        # best shift.
        ctx = binned(res_train[:, 1, ch], res_test[:, 1, ch], True) if n > 1 else 0.0
        if n > 2:
            btr = tab_train[:, 2:, ch].ravel() - 2
            bte = tab_test[:, 2:, ch].ravel() - 2
            rtr2, rte2 = res_train[:, 2:, ch].ravel(), res_test[:, 2:, ch].ravel()
            for b in range(p.buckets):
                ctx += binned(rtr2[btr == b], rte2[bte == b], True)
        ladder["contexts"] = ctx
        ladder["coded"] = later
        steps = list(ladder)
        per = {k: round(v / samples, 4) for k, v in ladder.items()}
        loss = {f"{b}-{a}": round((ladder[b] - ladder[a]) / samples, 4) for a, b in itertools.pairwise(steps)}
        chans.append(
            {
                "channel": schema.channels[ch].name,
                "grid": int(p.grid[ch]),
                "first_sample_bits_per_frame": round(first / len(frames), 2),
                "first_sample_order0_bits_per_frame": round(
                    xent(frames_of(train_q, n)[:, 0, ch], frames[:, 0, ch]) / len(frames), 2
                ),
                "later_bits_per_sample": per,
                "step_loss_bits_per_sample": loss,
                "second_order_gain_bits": None,
            }
        )
        # What a second-order predictor term (weights on the deltas one and two samples back, as for
        # an MA(1) drift) would gain over plain deltas: exact-value cross-entropy of its rounded
        # residual (least squares on train, evaluated on test) below that of the deltas; < 0: a loss.
        d = np.diff(train_q[:, ch]).astype(np.float64)
        if len(d) > 10:
            a = np.stack([d[1:-1], d[:-2]], axis=1)
            w = np.linalg.lstsq(a, d[2:], rcond=None)[0]
            dt = np.diff(test_q[:, ch]).astype(np.float64)
            rt = dt[2:] - np.rint(np.stack([dt[1:-1], dt[:-2]], axis=1) @ w)
            rtr_ = d[2:] - np.rint(a @ w)
            chans[-1]["second_order_gain_bits"] = round((xent(d[2:], dt[2:]) - xent(rtr_, rt)) / len(rt), 4)
    return {
        "dataset": name,
        "samples_per_frame": n,
        "bytes_per_sample": round(total_bits / 8 / samples, 4),
        "order0_bound_bytes_per_sample": round(order0_bound_bytes(train_q, frames) / samples, 4),
        "bits_per_sample": {
            "first_samples": round(sum(float(v[:, 0].sum()) for v in bits.values()) / samples, 4),
            "sample_count": round(count_bits / samples, 4),
            "later_samples": round(sum(float(v[:, 1:].sum()) for v in bits.values()) / samples, 4),
            "termination": round((total_bits - ideal_total - count_bits) / samples, 4),
        },
        "channels": chans,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16,32")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    args = ap.parse_args(argv)
    out = []
    for name in args.datasets.split(","):
        _say(f"loading {name}")
        _, q = DATASETS[name]()
        for n in (int(s) for s in args.sizes.split(",")):
            out.append(breakdown(name, q, n))
    print(json.dumps({"benchmark": "codec_breakdown", "results": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
