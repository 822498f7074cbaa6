"""Training: fit the integer predictor and the context tables to quantised telemetry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gateway.codec import lattice, tables
from gateway.codec.errors import DataError
from gateway.codec.model import (
    ACT_CAP,
    ACT_WEIGHT_MAX,
    GRID_MAX,
    GRID_ONE,
    JITTER_PHASES,
    MAX_CONTEXTS,
    MAX_SAMPLES,
    PMODE_LATTICE_PHASE,
    PMODE_SNAP,
    SHIFT,
    Model,
    Params,
    activity,
    activity_bucket,
    grid_phase,
    grid_split,
    jitter_phase,
    snap_delta,
)
from gateway.codec.schema import Schema

Progress = Callable[[str], None]
_WEIGHT_LIMIT = (1 << 23) - 1


def frames_of(q: np.ndarray, n: int) -> np.ndarray:
    """Cut a series into whole frames of n samples (F × n × C); a short tail is dropped."""
    f = len(q) // n
    return np.asarray(q[: f * n], dtype=np.int64).reshape(f, n, q.shape[1])


def _ridge(a: np.ndarray, y: np.ndarray, l1_iters: int = 6) -> np.ndarray:
    """Least squares with a little ridge, then IRLS steps towards least absolute error."""
    if a.shape[1] == 0:
        return np.zeros(0)
    reg = 1e-4 * len(a) * np.eye(a.shape[1])
    w = np.linalg.solve(a.T @ a + reg, a.T @ y)
    for _ in range(l1_iters):
        wt = 1.0 / np.maximum(np.abs(y - a @ w), 0.5)
        aw = a * wt[:, None]
        w = np.linalg.solve(aw.T @ a + reg * wt.mean(), aw.T @ y)
    return w


def _fixed(w: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(w * (1 << SHIFT)), -_WEIGHT_LIMIT, _WEIGHT_LIMIT).astype(np.int64)


def _exact_entropy(r: np.ndarray) -> float:
    _, counts = np.unique(r, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def _best_table(r: np.ndarray) -> tuple[int, np.ndarray, float]:
    """Shift k, frequencies and cost in bits for residuals r (cost includes raw bits)."""
    best: tuple[int, np.ndarray, float] | None = None
    if len(r) == 0:
        return 0, tables.quantise_freqs(np.zeros(tables.NSYM)), 0.0
    for k in range(tables.MAX_SHIFT + 1):
        sym, _, nraw = tables.to_symbols(r, k)
        counts = np.bincount(sym, minlength=tables.NSYM)
        freq = tables.quantise_freqs(counts)
        bits = tables.cost_bits(counts, freq) + float(nraw.sum())
        if best is None or bits < best[2]:
            best = (k, freq, bits)
        if nraw.sum() == 0 and k > 0:
            break
    assert best is not None
    return best


def _best_first_table(r: np.ndarray) -> tuple[int, np.ndarray, float]:
    """Table 0 (the first sample's learned wide prior): the zigzag table of :func:`_best_table`,
    or, if cheaper, the 62-bin window centred on the prior (shift ``WINDOW + s``) whose bin width
    2**s minimises bins + raw bits + escapes."""
    best = _best_table(r)
    if len(r) == 0:
        return best
    for k in range(tables.MAX_SHIFT + 1):
        sym, _, nraw, _, ntail = tables.first_to_symbols(r, k)
        counts = np.bincount(sym, minlength=tables.NSYM)
        freq = tables.quantise_freqs(counts)
        bits = tables.cost_bits(counts, freq) + float(nraw.sum() + ntail.sum())
        if bits < best[2]:
            best = (tables.WINDOW + k, freq, bits)
        elif counts[tables.ESC_LOW] + counts[tables.ESC_HIGH] == 0:
            break  # everything inside the window: wider bins only add raw bits
    return best


def _table_cost(r: np.ndarray, k: int | None = None) -> float:
    if k is None:
        return _best_table(r)[2]
    sym, _, nraw = tables.to_symbols(r, k)
    counts = np.bincount(sym, minlength=tables.NSYM)
    return tables.cost_bits(counts, tables.quantise_freqs(counts)) + float(nraw.sum())


def jitter_tables(
    m: np.ndarray, e: np.ndarray, grid: int, phase: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Jitter tables (4 × 64, one per lattice phase of the grid index) and their cost in bits.

    The four phases get their own tables only where that saves at least 1 % of the jitter's bits
    (a lattice step that is not a whole number of steps); else all four are the same table, which
    codes exactly as revision 2's single jitter table did. ``phase``: each value's table where it
    is not grid_phase(m) (model.jitter_phase under a prediction mode)."""
    m, e = np.ravel(m), np.ravel(e)
    sym, _, nraw = tables.to_symbols(e, 0)
    counts = np.bincount(sym, minlength=tables.NSYM)
    single = tables.quantise_freqs(counts)
    single_bits = tables.cost_bits(counts, single) + float(nraw.sum())
    ph = grid_phase(m, np.int64(grid)) if phase is None else np.ravel(phase)
    phased = np.empty((JITTER_PHASES, tables.NSYM), dtype=np.int64)
    phased_bits = float(nraw.sum())
    for i in range(JITTER_PHASES):
        ci = np.bincount(sym[ph == i], minlength=tables.NSYM)
        phased[i] = tables.quantise_freqs(ci)
        phased_bits += tables.cost_bits(ci, phased[i])
    if phased_bits < 0.99 * single_bits:
        return phased, phased_bits
    return np.tile(single, (JITTER_PHASES, 1)), single_bits


def choose_grid(r: np.ndarray, rng: np.random.Generator, ranked_out: list[int] | None = None) -> int:
    """Residual grid (1/256 units) for one channel: 256 unless a coarser grid codes cheaper.

    Sensors whose readings are scaled ADC counts leave residuals on a lattice (e.g. multiples
    of ~10.1 ± 1); coding the lattice index and the small jitter apart recovers bits that the
    binned tables would spend on empty values. ``ranked_out`` receives the candidates, cheapest
    first, whether or not they beat the plain code (the prediction-mode search tries them again).
    """
    if len(r) > 8000:
        r = rng.choice(r, 8000, replace=False)
    if len(r) < 64 or np.abs(r).max() < 8:
        return GRID_ONE
    plain = _table_cost(r)

    def proxy(g: int) -> float:
        m, e = grid_split(r, np.int64(g))
        return _exact_entropy(m) + _exact_entropy(e)

    coarse = sorted(range(384, min(GRID_MAX, 64 * GRID_ONE), 32), key=proxy)[:6]
    fine = {g + d for g in coarse for d in range(-16, 17, 2)}
    ranked = sorted(fine, key=proxy)[:8]
    # A multiple of the sensor's lattice step ranks as well as the step itself under the proxy (the
    # jitter then carries the lattice position); the step itself codes cheaper once the context
    # tables see its index (and the jitter's phase tables its lattice position), so the divisors of
    # each candidate compete too.
    ranked += sorted({round(g / k) for g in ranked for k in range(2, 9) if g / k >= 384} - set(ranked))
    best, best_cost = GRID_ONE, plain
    costs = {}
    for g in ranked:
        m, e = grid_split(r, np.int64(g))
        cost = costs[g] = _table_cost(m) + jitter_tables(m, e, g)[1]
        if cost < best_cost * 0.98:
            best, best_cost = g, cost
    if ranked_out is not None:
        ranked_out[:] = sorted(costs, key=costs.__getitem__)
    return best


def train(
    q: np.ndarray,
    schema: Schema,
    samples_per_frame: int,
    *,
    buckets: int = 6,
    model_id: int = 0,
    version: int = 1,
    progress: Progress | None = None,
    partial: bool = True,
) -> Model:
    """Fit a model to a quantised series (samples × channels, in time order).

    ``partial``: channels may take a lattice that holds for stretches of the readings (revision 7,
    lattice.find_partial). Where one does, the model is also trained without and the one that codes
    the training readings in fewer bytes is kept: the prediction modes of revision 4 already win
    some of what such a lattice does. A lattice that no longer holds at the end of the training
    readings is not taken at all (lattice.MIN_RECENT_FRAMES: the CGM set's glucose, even for its
    first third only, codes 4 % better without; its current, even from month 2 on, 4 % better with)."""
    say = progress or (lambda _msg: None)
    q = np.asarray(q, dtype=np.int64)
    c = len(schema)
    if not 1 <= samples_per_frame <= MAX_SAMPLES:
        raise DataError(f"samples per frame must be 1..{MAX_SAMPLES}")
    if not 1 <= buckets <= MAX_CONTEXTS:
        raise DataError(f"activity buckets must be 1..{MAX_CONTEXTS}")
    if q.ndim != 2 or q.shape[1] != c:
        raise DataError(f"training data must be samples × {c} channels")
    if len(q) < max(2 * samples_per_frame, 16):
        raise DataError(f"need at least {max(2 * samples_per_frame, 16)} samples to train, got {len(q)}")

    lo = np.array(
        [ch.qmin if ch.qmin is not None else v for ch, v in zip(schema.channels, q.min(axis=0), strict=True)]
    )
    hi = np.array(
        [ch.qmax if ch.qmax is not None else v for ch, v in zip(schema.channels, q.max(axis=0), strict=True)]
    )
    lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    readings = q
    # Revision 6: a channel whose readings sit on a lattice (a scaled ADC, a unit conversion) is
    # modelled and coded as lattice indices; everything below sees the indices.
    say("looking for value lattices")
    vmap, vframe = lattice.find_all(q, samples_per_frame, partial=partial)
    alternative = None
    if partial and lattice.partly(q, vmap).any():
        say("training the same model without the lattices that hold for stretches only, to compare")
        alternative = train(
            q,
            schema,
            samples_per_frame,
            buckets=buckets,
            model_id=model_id,
            version=version,
            progress=progress,
            partial=False,
        )
    q = lattice.index(q, vmap)[0]

    base = np.rint(np.median(q, axis=0)).astype(np.int64)
    off = (q - base).astype(np.float64)
    d = np.diff(q, axis=0)

    say("fitting the first-sample prior")
    a0 = np.zeros((c, c), dtype=np.int64)
    for ch in range(1, c):
        row = _fixed(_ridge(off[:, :ch], off[:, ch], l1_iters=2))
        pred = base[ch] + ((((q[:, :ch] - base[:ch]) @ row) + (1 << (SHIFT - 1))) >> SHIFT)
        if _best_first_table(q[:, ch] - pred)[2] < _best_first_table(q[:, ch] - base[ch])[2]:
            a0[ch, :ch] = row

    say("fitting the predictor over time and across channels")
    a1 = np.zeros((c, c), dtype=np.int64)
    a2 = np.zeros((c, c), dtype=np.int64)
    lev = np.zeros(c, dtype=np.int64)
    prev, cur, level = d[:-1], d[1:], (q[1:-1] - base)
    for ch in range(c):
        feats = np.concatenate([prev, cur[:, :ch], level[:, ch : ch + 1]], axis=1).astype(np.float64)
        y = cur[:, ch].astype(np.float64)
        options = [np.zeros(feats.shape[1], dtype=np.int64), _fixed(_ridge(feats, y))]
        if ch:
            cross = np.zeros(feats.shape[1])
            cross[c : c + ch] = _ridge(feats[:, c : c + ch], y)
            options.append(_fixed(cross))
        costs = []
        for w in options:
            r = cur[:, ch] - ((feats.astype(np.int64) @ w + (1 << (SHIFT - 1))) >> SHIFT)
            costs.append(_exact_entropy(r))
        w = options[int(np.argmin(costs))]
        a1[ch], a2[ch, :ch], lev[ch] = w[:c], w[c : c + ch], w[-1]

    say("learning context tables")
    zeros_thr = np.zeros((c, buckets - 1), dtype=np.int64)
    ntab = 2 + buckets
    flat = tables.quantise_freqs(np.ones(tables.NSYM))
    stub = Params(
        base,
        a0,
        a1,
        a2,
        lev,
        zeros_thr,
        np.zeros((c, ntab), dtype=np.int64),
        np.tile(flat, (c, ntab, 1)),
        lo,
        hi,
        np.full(c, GRID_ONE, dtype=np.int64),
        np.tile(flat, (c, JITTER_PHASES, 1)),
    )
    # Frames at every phase of the series, so the tables see each sample position evenly.
    n = samples_per_frame
    phases = range(0, n, max(1, n // 4))
    frames = np.concatenate([frames_of(q[s:], n) for s in phases])
    late = np.concatenate([s + n * np.arange((len(q) - s) // n) >= len(q) // 2 for s in phases])
    probe = Model(schema, stub, n, model_id, version)
    resid = probe.residuals(frames)
    fd = np.zeros_like(frames)
    fd[:, 1:] = frames[:, 1:] - frames[:, :-1]
    thr = np.zeros((c, buckets - 1), dtype=np.int64)
    shift = np.zeros((c, ntab), dtype=np.int64)
    freq = np.zeros((c, ntab, tables.NSYM), dtype=np.int64)
    grid = np.full(c, GRID_ONE, dtype=np.int64)
    jfreq = np.tile(flat, (c, JITTER_PHASES, 1))
    rng = np.random.default_rng(0)
    ranked: list[list[int]] = []
    for ch in range(c):
        ranked.append([])
        grid[ch] = choose_grid(resid[:, :, ch].ravel(), rng, ranked[ch])
    pmode = np.zeros(c, dtype=np.int64)
    say("choosing prediction modes")
    for ch in range(c):
        a1[ch], a2[ch], lev[ch], grid[ch], pmode[ch] = choose_pmode(
            frames,
            fd,
            resid[:, 0, ch],
            late,
            ch,
            (a1[ch], a2[ch], lev[ch], base[ch]),
            int(grid[ch]),
            ranked[ch],
            buckets,
            rng,
        )
    if pmode.any():
        probe = Model(
            schema, replace(stub, a1=a1, a2=a2, lev=lev, grid=grid, pmode=pmode), n, model_id, version
        )
        resid = probe.residuals(frames)
    pred = frames - resid
    full = resid.copy()  # whole residuals (before the grid split): the activity weights' input
    for ch in range(c):
        if grid[ch] != GRID_ONE:
            m, e = grid_split(resid[:, :, ch], grid[ch])
            resid[:, :, ch] = m
            jfreq[ch] = jitter_tables(
                m, e, int(grid[ch]), jitter_phase(pred[:, :, ch], m, grid[ch], pmode[ch])
            )[0]
    actw = np.eye(c, dtype=np.int64)
    for ch in range(c):
        act = None
        if ch and buckets > 1 and n > 2:
            actw[ch, : ch + 1] = choose_actw(
                resid[:, 2:, ch], fd[:, 1:-1, ch], full[:, 2:, :ch], late, buckets
            )
            if actw[ch, :ch].any():
                act = activity(actw[: ch + 1, : ch + 1], fd[:, 1:-1, : ch + 1], full[:, 2:, : ch + 1])[
                    ..., ch
                ]
        groups = table_groups(resid[:, :, ch], fd[:, :, ch], buckets, thr[ch], act)
        shift[ch, 0], freq[ch, 0], _ = _best_first_table(groups[0])
        for ti, r in enumerate(groups[1:], start=1):
            shift[ch, ti], freq[ch, ti], _ = _best_table(r)
    params = Params(base, a0, a1, a2, lev, thr, shift, freq, lo, hi, grid, jfreq, pmode, actw, vmap, vframe)
    model = Model(schema, params, n, model_id, version)
    say("measuring the model on its training data")
    model.meta["metrics"] = measure(model, readings)
    model.meta["training"] = {"samples": len(q), "buckets": buckets}
    model.meta["generation"] = reversion_meta(readings, np.diff(readings, axis=0))
    if alternative is not None:
        # judged on the latest training readings: a lattice for stretches holds there (MIN_RECENT_
        # FRAMES), and its frame flag expects the latest regime, so the whole training span would
        # charge it for the stretches it no longer has to code
        tail = readings[-max(len(readings) // 8, 4 * n) :]
        if measure(alternative, tail)["bytes_per_sample"] < measure(model, tail)["bytes_per_sample"]:
            return alternative
    return model


def _bucket_bits(r: np.ndarray, act: np.ndarray, buckets: int) -> float:
    """Bits of values r coded by activity buckets at act's quantiles, each bucket its best table."""
    qs = np.quantile(act, np.linspace(0, 1, buckets + 1)[1:-1])
    b = activity_bucket(act, np.maximum.accumulate(np.floor(qs).astype(np.int64)))
    return sum(_best_table(r[b == i])[2] for i in range(buckets))


def choose_actw(
    m: np.ndarray, prev: np.ndarray, resid: np.ndarray, late: np.ndarray, buckets: int
) -> np.ndarray:
    """Channel ch's activity weights on channels 0..ch (bitstream revision 5): the identity
    (activity = |previous change|) unless mixing in the earlier channels' residuals at the same
    step, each scaled by its spread, codes the later samples ≥ 1 % cheaper and no dearer in either
    half of the training series (``late``). ``m``: the values the context tables code (F × (N−2));
    ``prev``: the previous changes; ``resid``: the earlier channels' whole residuals (F × (N−2) × ch).

    Why: the context tables learn how wide a residual is likely to be, and a sample's own last
    change is only one witness; the residual the temperature just had says whether the air is
    changing now, which the humidity's own last change does not (Daphnet: one axis's burst of
    movement is the others')."""
    ch = resid.shape[-1]
    row = np.zeros(ch + 1, dtype=np.int64)
    row[ch] = 1
    capped = np.minimum(np.abs(resid), ACT_CAP)
    parts = [(m[h].ravel(), np.abs(prev[h]).ravel(), capped[h].reshape(-1, ch)) for h in (late, ~late)]
    if min(len(r) for r, _, _ in parts) < 64:
        return row
    plain = [_bucket_bits(r, a, buckets) for r, a, _ in parts]
    best_row, best = row, 0.99 * sum(plain)
    sd_own = max(float(np.std(np.abs(prev))), 1e-3)
    sd = np.maximum(np.std(capped.reshape(-1, ch), axis=0), 1e-3)
    for mix in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 0.0):
        own = 16 if mix else 0  # the own weight, so the others' can be fractions of it; 0: theirs alone
        w = np.minimum(np.rint(16 * (mix or 1.0) * sd_own / (ch * sd)), ACT_WEIGHT_MAX - 1).astype(np.int64)
        if not w.any():
            continue
        got = [_bucket_bits(r, own * a + rr @ w, buckets) for r, a, rr in parts]
        if sum(got) < best and all(g <= p for g, p in zip(got, plain, strict=True)):
            best_row, best = np.concatenate([w, [own]]), sum(got)
    return best_row


def _channel_cost(
    frames: np.ndarray,
    fd: np.ndarray,
    first: np.ndarray,
    ch: int,
    row: tuple[np.ndarray, np.ndarray, int, int],
    grid: int,
    pmode: int,
    buckets: int,
) -> float:
    """Coded bits of one channel's training frames under a predictor row, grid and prediction mode
    (first-sample, context and jitter tables each fitted to them); ``first`` the first samples'
    residuals, which no mode changes."""
    a1, a2, lev, base = row
    x = frames[:, :, ch]
    acc = fd[:, :-1] @ a1 + fd[:, 1:, :ch] @ a2[:ch] + lev * (x[:, :-1] - base)
    delta = (acc + (1 << (SHIFT - 1))) >> SHIFT
    if pmode & PMODE_SNAP:
        delta = snap_delta(delta, np.int64(grid))
    pred = np.concatenate([x[:, :1] - first[:, None], x[:, :-1] + delta], axis=1)
    r = x - pred
    bits = 0.0
    if grid != GRID_ONE:
        r, e = grid_split(r, np.int64(grid))
        bits += jitter_tables(r, e, grid, jitter_phase(pred, r, np.int64(grid), np.int64(pmode)))[1]
    groups = table_groups(r, fd[:, :, ch], buckets, np.zeros(buckets - 1, dtype=np.int64))
    bits += _best_first_table(groups[0])[2]
    return bits + sum(_best_table(g)[2] for g in groups[1:])


def choose_pmode(
    frames: np.ndarray,
    fd: np.ndarray,
    first: np.ndarray,
    late: np.ndarray,
    ch: int,
    row: tuple[np.ndarray, np.ndarray, int, int],
    grid: int,
    ranked: list[int],
    buckets: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """One channel's (a1, a2, lev, grid, pmode): the given row, grid and mode 0 unless a prediction
    mode (bitstream revision 4) on one of the best-ranked grids, with that row or a fit of the
    predictor, codes the training frames ≥ 1 % cheaper, and ≤ 1 % dearer in either half of the series
    (``late``: the frame lies in the second half).

    Why a refit: a fractional prediction smears the exact values a lattice sensor repeats, so the
    plain-delta row often wins the entropy race; snapped onto the grid, a fitted row keeps them
    (CGM current: the previous change's weight ~0.7 saves ~0.3 bit per value). Why both halves: a
    sensor's lattice can come and go (the CGM set's glucose readings are all even for a third of
    the recording, then not): a mode that only pays in one stretch is a bet on the past."""
    a1, a2, lev, base = row
    parts = []
    for half in (False, True):
        sel = np.flatnonzero(late == half)
        if len(sel) > 600:  # a sample of each half: the search prices up to 36 variants per channel
            sel = np.sort(rng.choice(sel, 600, replace=False))
        parts.append((frames[sel], fd[sel], first[sel]))
    c = frames.shape[2]

    def costs(r: tuple[np.ndarray, np.ndarray, int], g: int, mode: int) -> list[float]:
        return [
            _channel_cost(f, d, r0, ch, (*r, int(base)), g, mode, buckets) for f, d, r0 in parts if len(f)
        ]

    best = (a1, a2, int(lev), grid, 0)
    plain = costs((a1, a2, int(lev)), grid, 0)
    best_cost = 0.99 * sum(plain)
    # The grids that suit the residuals of the given row, and those that suit the plain changes (a
    # fractional row smears a lattice the snapped row would keep).
    of_deltas: list[int] = []
    if np.any(a1) or np.any(a2) or lev:  # (for a plain-delta row they are the same list)
        choose_grid(fd[:, 1:, ch].ravel(), rng, of_deltas)
    # Two steps always competes: readings that are mostly even (a converter with twice the schema's
    # resolution) rank behind the multiples of two under choose_grid's proxy.
    grids = list(
        dict.fromkeys([g for g in [grid, 2 * GRID_ONE, *ranked[:2], *of_deltas[:2]] if g != GRID_ONE])
    )
    if frames.shape[1] < 3:
        return best
    # A least-absolute-error fit on the deltas (own and other channels' previous, earlier channels'
    # current, level): the row a snapped prediction can use without losing the lattice.
    prev = fd[:, 1:-1].reshape(-1, c)
    cur = fd[:, 2:].reshape(-1, c)
    level = (frames[:, 1:-1, ch] - base).reshape(-1, 1)
    feats = np.concatenate([prev, cur[:, :ch], level], axis=1).astype(np.float64)
    w = _fixed(_ridge(feats, cur[:, ch].astype(np.float64)))
    fit_a1, fit_a2 = w[:c], np.zeros(c, dtype=np.int64)
    fit_a2[:ch] = w[c : c + ch]
    rows = [(a1, a2, int(lev)), (fit_a1, fit_a2, int(w[-1]))]

    # Both modes at once first, for every grid and row; the single modes only on the three best
    # of those, and only where they came within 3 % of the best so far.
    def consider(r: tuple[np.ndarray, np.ndarray, int], g: int, mode: int, got: list[float]) -> None:
        nonlocal best, best_cost
        if sum(got) < best_cost and all(a <= 1.01 * b for a, b in zip(got, plain, strict=True)):
            best, best_cost = (*r, g, mode), sum(got)

    both = PMODE_SNAP | PMODE_LATTICE_PHASE
    first_round = {(g, i): costs(r, g, both) for g in grids for i, r in enumerate(rows)}
    for (g, i), got in first_round.items():
        consider(rows[i], g, both, got)
    for g, i in sorted(first_round, key=lambda key: sum(first_round[key]))[:3]:
        if sum(first_round[(g, i)]) <= 1.03 * best_cost:
            for mode in (PMODE_SNAP, PMODE_LATTICE_PHASE):
                consider(rows[i], g, mode, costs(rows[i], g, mode))
    return best


def reversion_meta(q: np.ndarray, d: np.ndarray) -> dict[str, list[float]]:
    """Generation metadata of the format before learned time structure: each channel's mean and an
    AR(1) pull towards it whose stationary spread matches the data, rho = var(d) / (2 var(x)), applied
    only on steps that move (so scaled up by the share of non-zero deltas ``d``)."""
    var_x = np.maximum(q.var(axis=0), 1e-9)
    moving = np.maximum((d != 0).mean(axis=0), 0.05)
    rho = np.clip(d.var(axis=0) / (2 * var_x) / moving, 0.0, 0.5)
    return {
        "mean": [round(float(v), 3) for v in q.mean(axis=0)],
        "reversion": [round(float(v), 6) for v in rho],
    }


def measure(model: Model, q: np.ndarray) -> dict[str, object]:
    """Bytes per sample (real payloads) and mean |residual| per channel on a series."""
    frames = frames_of(q, model.samples_per_frame)
    if len(frames) == 0:
        raise DataError(f"need at least {model.samples_per_frame} samples to measure")
    payloads = model.encode_many(frames)
    total = sum(len(p) for p in payloads)
    resid = (
        np.abs(model.residuals(frames)[:, 1:]) if frames.shape[1] > 1 else np.zeros((1, 1, len(model.schema)))
    )
    return {
        "bytes_per_sample": round(total / (len(frames) * frames.shape[1]), 4),
        "mean_abs_residual": [round(float(v), 4) for v in resid.reshape(-1, len(model.schema)).mean(axis=0)],
    }


def train_to_size(
    q: np.ndarray,
    schema: Schema,
    samples_per_frame: int,
    *,
    max_bytes: int = 4096,
    model_id: int = 0,
    version: int = 1,
    name: str | None = None,
    progress: Progress | None = None,
    times: list[str] | None = None,
    max_gen_bytes: int = 16384,
) -> tuple[Model, bytes]:
    """Train with the most activity buckets (6 down to 1) whose weight file fits ``max_bytes``.

    ``max_bytes`` caps the file without the learned time structure (what the node's tables are
    exported from); the time structure, which never leaves the gateway, may add ``max_gen_bytes``.
    ``times`` (the CSV's ``time`` cells) let the generation metadata learn the daily cycle."""
    from gateway.codec import fill, generate, weights  # local: keep train importable alone

    say = progress or (lambda _msg: None)
    learned: dict[bool, object] = {}  # time structure does not depend on the buckets: learn it once
    for buckets in range(6, 0, -1):
        say(f"training with {buckets} activity bucket(s)")
        model = train(
            q,
            schema,
            samples_per_frame,
            buckets=buckets,
            model_id=model_id,
            version=version,
            progress=progress,
        )
        if name:
            model.meta["name"] = name
        data = weights.to_bytes(model)
        if len(data) <= max_bytes:
            full = generate.attach(model, q, times, len(data) + max_gen_bytes, learned)
            if full is not None:
                say("choosing how gap filling fills each channel")
                inc = fill.learn_increments(model, q, times)
                if inc is not None:
                    gen = model.meta["generation"]
                    model.meta["generation"] = {**gen, "increments": inc.to_meta()}
                    with_inc = weights.to_bytes(model)
                    if len(with_inc) <= len(data) + max_gen_bytes:
                        return model, with_inc
                    model.meta["generation"] = gen
                    full = weights.to_bytes(model)
                return model, full
            say(f"time structure exceeds {max_gen_bytes} bytes: keeping the model without it")
            return model, data
        say(f"weight file {len(data)} bytes exceeds {max_bytes}, trying fewer buckets")
    raise DataError(f"even the smallest model exceeds {max_bytes} bytes; use fewer channels")


def table_groups(
    resid: np.ndarray, fd: np.ndarray, buckets: int, thr: np.ndarray, act: np.ndarray | None = None
) -> list[np.ndarray]:
    """One channel's residuals split by the table that codes them (first, second, then each activity
    bucket); ``thr`` (that channel's row, updated in place) gets the activity quantiles first.
    ``act``: the later samples' activities (F × (N−2), model.activity) where they are not
    |previous change|."""
    n = resid.shape[1]
    if act is None:
        act = np.abs(fd[:, 1:-1]) if n > 2 else np.zeros((len(resid), 0), dtype=np.int64)
    act = act.ravel()
    if buckets > 1 and len(act):
        qs = np.quantile(act, np.linspace(0, 1, buckets + 1)[1:-1])
        # (int32 in the weight file: a weighted activity could in principle exceed it)
        thr[:] = np.minimum(np.maximum.accumulate(np.floor(qs).astype(np.int64)), (1 << 31) - 1)
    groups = [resid[:, 0], resid[:, 1] if n > 1 else np.zeros(0, dtype=np.int64)]
    if n > 2:
        b = activity_bucket(act, thr)
        r = resid[:, 2:].ravel()
        groups += [r[b == i] for i in range(buckets)]
    else:
        groups += [np.zeros(0, dtype=np.int64)] * buckets
    return groups
