"""Incremental training: adapt an installed model's parameters to new telemetry of the same schema.

A full training (gateway.codec.train) searches everything from nothing: the residual grid of each
channel and the number of activity buckets (6 down to 1, one whole training per try, until the weight
file fits). Adapting starts from a model that already answers those questions for this kind of
sensor, keeps them (same schema, frame size, buckets and prediction modes, so the result is a drop-in
next version) and re-fits only what a change of season or site moves, in one pass:

- ``base`` (the first sample's prior) becomes the new data's median;
- each channel's predictor rows (``a0``; ``a1``/``a2``/``lev``): the old row competes with a re-fit
  and with plain delta on the new data, the cheapest wins (the old row wins when the dynamics did
  not change);
- a channel without a prediction mode may take the residual grid the new data's residuals suit, when
  it codes the new data ≥ 1 % cheaper than the old grid: a new site's sensor may read in other units
  (Greensboro's temperatures are whole °F, a lattice of 0.556 steps of 0.1 °C; Sand Point's are not);
- the activity weights (bitstream revision 5: which channels' residuals at this step widen a channel's
  table) are chosen again on the new data, as ``train`` chooses them: which channels move together
  is a property of the site (Sand Point's humidity follows its temperature more than Greensboro's);
- activity thresholds are re-cut at the new data's quantiles;
- each table's symbol counts come from the new data, with the old table as a prior of
  ``prior_samples`` pseudo-samples when the old binning shift still fits (within 1 % of the best).
  Two months of hourly data leave many of a table's 64 symbols unseen; the old table says how likely
  they still are, which a table learned from scratch on the same months cannot know.

The result must still be judged on data it was not fitted to (``compare``, ``model retrain``).
"""

from __future__ import annotations

import numpy as np

from gateway.codec import lattice, tables
from gateway.codec.errors import DataError
from gateway.codec.model import (
    GRID_ONE,
    JITTER_PHASES,
    MAX_SAMPLES,
    PMODE_SNAP,
    SHIFT,
    Model,
    Params,
    activity,
    grid_split,
    jitter_phase,
    snap_delta,
)
from gateway.codec.train import (
    Progress,
    _best_first_table,
    _best_table,
    _channel_cost,
    _exact_entropy,
    _fixed,
    _ridge,
    choose_actw,
    choose_grid,
    frames_of,
    jitter_tables,
    measure,
    reversion_meta,
    table_groups,
)

PRIOR_SAMPLES = 24.0  # weight of the old table, in samples, beside the new counts
SHIFT_SLACK = 1.01  # keep the old binning shift (and its prior) if it codes within 1 % of the best


def check_compatible(init: Model, q: np.ndarray, samples_per_frame: int | None = None) -> None:
    """Refuse data or a frame size the model cannot be adapted to (one-line DataError)."""
    c = len(init.schema)
    if q.ndim != 2 or q.shape[1] != c:
        raise DataError(f"--init model {init.key} has {c} channels; the data have {q.shape[-1]}")
    if samples_per_frame is not None and samples_per_frame != init.samples_per_frame:
        raise DataError(
            f"--init model {init.key} sends {init.samples_per_frame} samples per frame,"
            f" not {samples_per_frame};"
            " incremental training keeps the frame size (train from scratch to change it)"
        )
    need = max(2 * init.samples_per_frame, 16)
    if len(q) < need:
        raise DataError(f"need at least {need} samples to adapt model {init.key}, got {len(q)}")


def _prior_counts(freq: np.ndarray, weight: float) -> np.ndarray:
    learned = np.maximum(freq.astype(np.float64) - 1.0, 0.0)  # the floor of 1 is not knowledge
    total = learned.sum()
    return np.zeros_like(learned) if total <= 0 else learned * (weight / total)


def _table(r: np.ndarray, old_k: int, old_freq: np.ndarray, prior: float) -> tuple[int, np.ndarray]:
    """Shift and frequencies of one later-sample table from residuals ``r`` and the old table."""
    best_k, best_freq, best_bits = _best_table(r)
    if prior <= 0 or old_k > tables.MAX_SHIFT:
        return best_k, best_freq
    sym, _, nraw = tables.to_symbols(r, old_k)
    counts = np.bincount(sym, minlength=tables.NSYM).astype(np.float64)
    bits = tables.cost_bits(counts, tables.quantise_freqs(counts)) + float(nraw.sum())
    if len(r) and bits > best_bits * SHIFT_SLACK:
        return best_k, best_freq
    return old_k, tables.quantise_freqs(counts + _prior_counts(old_freq, prior))


def _first_table(r: np.ndarray, old_k: int, old_freq: np.ndarray, prior: float) -> tuple[int, np.ndarray]:
    """Table 0 (zigzag or windowed binning) likewise."""
    best_k, best_freq, best_bits = _best_first_table(r)
    if prior <= 0:
        return best_k, best_freq
    if old_k >= tables.WINDOW:
        sym, _, nraw, _, ntail = tables.first_to_symbols(r, old_k - tables.WINDOW)
        raw = float(nraw.sum() + ntail.sum())
    else:
        sym, _, nraw = tables.to_symbols(r, old_k)
        raw = float(nraw.sum())
    counts = np.bincount(sym, minlength=tables.NSYM).astype(np.float64)
    bits = tables.cost_bits(counts, tables.quantise_freqs(counts)) + raw
    if len(r) and bits > best_bits * SHIFT_SLACK:
        return best_k, best_freq
    return old_k, tables.quantise_freqs(counts + _prior_counts(old_freq, prior))


def _adapt_lattices(old: np.ndarray, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel the old value lattice while the new readings still sit on it (≥ 95 %, the
    trainer's rule, or in stretches that make it pay: it is the sensor's, and keeps the old tables
    meaningful as priors), else what the new readings sit on (another sensor or unit at a new
    site), each with the new data's flag frequencies (lattice.find_all)."""
    rows, gates = [], []
    for c in range(q.shape[1]):
        kept = tuple(int(v) for v in old[c, :4])
        if kept[3] != lattice.NONE:
            _k, j = lattice.index(q[:, c : c + 1], old[c : c + 1])
            if float(np.mean(j == 0)) < lattice.MIN_COVER and (
                lattice.saving(kept, q[:, c], n) < lattice.MIN_PARTIAL_GAIN  # type: ignore[arg-type]
            ):
                kept = lattice.find(q[:, c])
        else:
            kept = lattice.find(q[:, c])
        if kept[3] == lattice.NONE:
            kept = lattice.find_partial(q[:, c], n)
        row, g = lattice.with_flag(kept, q[:, c], n)  # type: ignore[arg-type]
        rows.append(row)
        gates.append(g)
    return np.array(rows, dtype=np.int64).reshape(-1, lattice.FIELDS), np.array(gates, dtype=np.int64)


def adapt(
    init: Model,
    q: np.ndarray,
    *,
    version: int | None = None,
    prior_samples: float = PRIOR_SAMPLES,
    progress: Progress | None = None,
) -> Model:
    """A new version of ``init`` fitted to the quantised series ``q`` (samples × channels, time order)."""
    say = progress or (lambda _msg: None)
    q = np.asarray(q, dtype=np.int64)
    check_compatible(init, q)
    old = init.params
    c = len(init.schema)
    n = init.samples_per_frame
    buckets = old.buckets
    if not 1 <= n <= MAX_SAMPLES:
        raise DataError(f"samples per frame must be 1..{MAX_SAMPLES}")

    readings = q
    vmap, vframe = _adapt_lattices(old.vmap, q, n)  # type: ignore[arg-type]
    q = lattice.index(q, vmap)[0]
    # Old tables are a prior only where the values mean the same: not across a change of lattice.
    priors = np.where(np.any(vmap[:, :4] != old.vmap[:, :4], axis=1), 0.0, prior_samples)  # type: ignore[index]
    base = np.rint(np.median(q, axis=0)).astype(np.int64)
    off = (q - base).astype(np.float64)
    d = np.diff(q, axis=0)

    say(f"adapting model {init.key}: the first-sample prior")
    a0 = np.zeros((c, c), dtype=np.int64)
    for ch in range(1, c):
        first_cost = []
        rows = [
            np.zeros(ch, dtype=np.int64),
            old.a0[ch, :ch],
            _fixed(_ridge(off[:, :ch], off[:, ch], l1_iters=2)),
        ]
        for row in rows:
            pred = base[ch] + ((((q[:, :ch] - base[:ch]) @ row) + (1 << (SHIFT - 1))) >> SHIFT)
            first_cost.append(_best_first_table(q[:, ch] - pred)[2])
        a0[ch, :ch] = rows[int(np.argmin(first_cost))]

    say("adapting the predictor over time and across channels")
    a1 = np.zeros((c, c), dtype=np.int64)
    a2 = np.zeros((c, c), dtype=np.int64)
    lev = np.zeros(c, dtype=np.int64)
    prev, cur, level = d[:-1], d[1:], (q[1:-1] - base)
    for ch in range(c):
        feats = np.concatenate([prev, cur[:, :ch], level[:, ch : ch + 1]], axis=1).astype(np.int64)
        y = cur[:, ch]
        kept = np.concatenate([old.a1[ch], old.a2[ch, :ch], old.lev[ch : ch + 1]])
        options = [
            kept,
            np.zeros(feats.shape[1], dtype=np.int64),
            _fixed(_ridge(feats.astype(np.float64), y, 2)),
        ]
        snap = bool(old.pmode[ch] & PMODE_SNAP)  # the kept mode rounds the change onto the grid

        def change(w: np.ndarray, feats: np.ndarray = feats, ch: int = ch, snap: bool = snap) -> np.ndarray:
            delta = (feats @ w + (1 << (SHIFT - 1))) >> SHIFT
            return snap_delta(delta, old.grid[ch]) if snap else delta

        costs = [_exact_entropy(y - change(w)) for w in options]
        w = options[int(np.argmin(costs))]
        a1[ch], a2[ch, :ch], lev[ch] = w[:c], w[c : c + ch], w[-1]

    lo = np.array(
        [
            ch.qmin if ch.qmin is not None else v
            for ch, v in zip(init.schema.channels, readings.min(axis=0), strict=True)
        ]
    )
    hi = np.array(
        [
            ch.qmax if ch.qmax is not None else v
            for ch, v in zip(init.schema.channels, readings.max(axis=0), strict=True)
        ]
    )

    say("adapting the context tables")
    ntab = 2 + buckets
    grid = old.grid.copy()
    stub = Params(
        base,
        a0,
        a1,
        a2,
        lev,
        old.thr,
        old.shift,
        old.freq,
        lo.astype(np.int64),
        hi.astype(np.int64),
        grid,
        old.jfreq,
        old.pmode,
        old.actw,
    )  # no lattice: it works on the indices already
    phases = range(0, n, max(1, n // 4))
    frames = np.concatenate([frames_of(q[s:], n) for s in phases])
    late = np.concatenate([s + n * np.arange((len(q) - s) // n) >= len(q) // 2 for s in phases])
    resid = Model(init.schema, stub, n, init.model_id, init.version).residuals(frames)
    pred = frames - resid
    fd = np.zeros_like(frames)
    fd[:, 1:] = frames[:, 1:] - frames[:, :-1]
    thr = np.zeros((c, buckets - 1), dtype=np.int64)
    shift = np.zeros((c, ntab), dtype=np.int64)
    freq = np.zeros((c, ntab, tables.NSYM), dtype=np.int64)
    jfreq = old.jfreq.copy()
    rng = np.random.default_rng(0)
    for ch in range(c):
        if old.pmode[ch]:  # a mode's prediction depends on its grid: both stay
            continue
        new = choose_grid(resid[:, :, ch].ravel(), rng)
        if new != grid[ch]:
            row = (a1[ch], a2[ch], int(lev[ch]), int(base[ch]))
            kept, other = (
                _channel_cost(frames, fd, resid[:, 0, ch], ch, row, int(g), 0, buckets)
                for g in (grid[ch], new)
            )
            if other < 0.99 * kept:
                grid[ch] = new
    full = resid.copy()  # whole residuals (before the grid split): the activity weights' input
    for ch in range(c):
        if grid[ch] != old.grid[ch]:  # a new grid: its jitter tables from the new data alone
            m, e = grid_split(resid[:, :, ch], grid[ch])
            resid[:, :, ch] = m
            jfreq[ch] = jitter_tables(m, e, int(grid[ch]), jitter_phase(pred[:, :, ch], m, grid[ch], 0))[0]
        elif grid[ch] != GRID_ONE:
            m, e = grid_split(resid[:, :, ch], grid[ch])
            resid[:, :, ch] = m
            sym, _, _ = tables.to_symbols(e.ravel(), 0)
            ph = jitter_phase(pred[:, :, ch], m, grid[ch], old.pmode[ch]).ravel()
            for i in range(JITTER_PHASES):  # one jitter table per lattice phase (bitstream revision 3)
                prior = _prior_counts(old.jfreq[ch, i], priors[ch])
                jfreq[ch, i] = tables.quantise_freqs(np.bincount(sym[ph == i], minlength=tables.NSYM) + prior)
    actw = np.eye(c, dtype=np.int64)
    if buckets > 1 and n > 2:
        for ch in range(1, c):
            actw[ch, : ch + 1] = choose_actw(
                resid[:, 2:, ch], fd[:, 1:-1, ch], full[:, 2:, :ch], late, buckets
            )
    act = activity(actw, fd[:, 1:-1], full[:, 2:]) if n > 2 else None
    for ch in range(c):
        groups = table_groups(
            resid[:, :, ch], fd[:, :, ch], buckets, thr[ch], None if act is None else act[..., ch]
        )
        shift[ch, 0], freq[ch, 0] = _first_table(
            groups[0], int(old.shift[ch, 0]), old.freq[ch, 0], priors[ch]
        )
        for ti, r in enumerate(groups[1:], start=1):
            shift[ch, ti], freq[ch, ti] = _table(r, int(old.shift[ch, ti]), old.freq[ch, ti], priors[ch])

    params = Params(
        base,
        a0,
        a1,
        a2,
        lev,
        thr,
        shift,
        freq,
        lo.astype(np.int64),
        hi.astype(np.int64),
        grid,
        jfreq,
        old.pmode,
        actw,
        vmap,
        vframe,
    )
    model = Model(init.schema, params, n, init.model_id, version if version is not None else init.version + 1)
    say("measuring the adapted model on its training data")
    model.meta["name"] = init.meta.get("name") or f"model-{init.model_id}"
    model.meta["metrics"] = measure(model, readings)
    model.meta["training"] = {
        "samples": len(q),
        "buckets": buckets,
        "init": init.key,
        "init_sha256": init.meta.get("sha256"),
    }
    # the same pull towards the mean that train() fits
    model.meta["generation"] = reversion_meta(readings, np.diff(readings, axis=0))
    return model


def score(model: Model, series: list[np.ndarray]) -> dict[str, object]:
    """Bytes per sample (total and per channel, from the coded bits) and a lossless check over
    series each cut into the model's frames (a short tail frame as a node sends it)."""
    payload = 0
    samples = 0
    lossless = True
    c = len(model.schema)
    chan_bits = np.zeros(c)
    for q in series:
        q = np.asarray(q, dtype=np.int64)
        frames = [q[i : i + model.samples_per_frame] for i in range(0, len(q), model.samples_per_frame)]
        for f in frames:
            p = model.encode(f)
            payload += len(p)
            lossless = lossless and np.array_equal(model.decode(p), f)
        samples += len(q)
        whole = frames_of(q, model.samples_per_frame)
        if len(whole):
            chan_bits += channel_bits(model, whole)
    if not samples:
        raise DataError("no samples to evaluate on")
    return {
        "model": model.key,
        "samples": samples,
        "bytes_per_sample": round(payload / samples, 4),
        "lossless": bool(lossless),
        "channel_bytes_per_sample": {
            name: round(float(b) / 8 / samples, 4)
            for name, b in zip(model.schema.names, chan_bits, strict=True)
        },
    }


def channel_bits(model: Model, frames: np.ndarray) -> np.ndarray:
    """Ideal coded bits per channel of whole frames (symbol cost under the model's tables + raw bits):
    how the payload splits between channels (the range coder adds < 1 byte per frame on top)."""
    p = model.params
    frames, jit = model.to_index(frames)
    pred, table = model.predict_all(frames)
    resid = frames - pred
    out = np.zeros(len(model.schema))
    assert p.vmap is not None
    for ch in np.flatnonzero(p.vmap[:, 3] != lattice.NONE).tolist():  # off-lattice flags and jitters
        f = int(p.vmap[ch, 4])
        off = jit[:, :, ch] != 0
        gaps = lattice.gap(frames[:, :, ch : ch + 1], p.vmap[ch : ch + 1])[..., 0]
        out[ch] += float(np.where(off, lattice.bit_length(gaps - 2), 0).sum())
        g = int(p.vframe[ch])  # type: ignore[index]
        if g:  # revision 7: a frame flag, then per-reading flags only in frames that have off readings
            some = off.any(axis=1)
            out[ch] += lattice.flag_bits(some, g) + lattice.flag_bits(off[some], f)
        else:
            out[ch] += lattice.flag_bits(off, f)
    for ch in range(len(model.schema)):
        r = resid[:, :, ch]
        if p.grid[ch] != GRID_ONE:
            r, e = grid_split(r, p.grid[ch])
            sym, _, _ = tables.to_symbols(e.ravel(), 0)
            ph = jitter_phase(pred[:, :, ch], r, p.grid[ch], p.pmode[ch]).ravel()
            out[ch] += float(-np.log2(p.jfreq[ch, ph, sym] / 4096.0).sum())
        t = table[:, :, ch]
        for ti in range(p.shift.shape[1]):
            sel = r[t == ti]
            if not len(sel):
                continue
            k = int(p.shift[ch, ti])
            if k >= tables.WINDOW:
                sym, _, nraw, _, ntail = tables.first_to_symbols(sel, k - tables.WINDOW)
                raw = float(nraw.sum() + ntail.sum())
            else:
                sym, _, nraw = tables.to_symbols(sel, k)
                raw = float(nraw.sum())
            out[ch] += float(-np.log2(p.freq[ch, ti][sym] / 4096.0).sum()) + raw
    return out
