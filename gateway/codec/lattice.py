"""Value lattices: readings that can only take the values ``L(k)`` of an integer index ``k``.

A scaled ADC (Daphnet's accelerometers: ``trunc(1000·counts / 99)`` mg) or a unit conversion
(TMY3 temperatures: ``round((°F − 32)·50/9)`` tenths of °C) leaves a channel's readings on a lattice
whose step is not a whole number of quantisation steps. Coding the index instead of the reading
spends nothing on the values the sensor cannot produce (bitstream revision 6, docs/codec.md
"Value lattice"). A channel's lattice is five integers ``(P, Q, D, mode, F)``, ``F`` the
frequency (of 4096) of the flag that marks a reading off the lattice:

- mode 1 (floor): ``L(k) = floor((P·k + Q) / D)``; rounding is a floor with other constants;
- mode 2 (trunc): ``L(k) = trunc((P·k + Q) / D)``, rounding toward zero (C's integer conversion);
- mode 0: no lattice (stored as ``(1, 0, 1, 0, 0)``).

Revision 7 adds a frame flag per lattice channel (its frequency ``G`` of 4096, in the model's
``vframe``; 0 = none): "some reading of this frame is off the lattice". A frame whose readings all
sit on it then sends no per-reading flags, which is what a sensor that changes resolution needs
(the CGM set's current is read at 0.01 nA for two months, then at 0.02 nA): the coarse stretches
cost nothing for the fine ones, and ``F`` is learned from the frames that have off readings.

``2·D ≤ P`` (and ``Q = 0`` for trunc, whose zero bin is twice as wide: an integer offset of the
counts is a multiple of P, so only a fractional one is lost) makes ``L`` strictly increasing with
steps of at least 2, so every integer ``x`` has a
unique index ``k = max{k : L(k) ≤ x}`` and jitter ``j = x − L(k)`` in ``0 ≤ j < L(k+1) − L(k)``:
a reading off the lattice still codes (its jitter is sent), nothing is lost.
"""

from __future__ import annotations

import numpy as np

from gateway.codec.rangecoder import PROB_TOTAL

NONE = 0
FLOOR = 1
TRUNC = 2
MAX_D = 1 << 20
MAX_P = 1 << 24
IDENTITY = (1, 0, 1, NONE)
FIELDS = 5
# Share of training samples that must sit on a lattice for the trainer to use it.
MIN_COVER = 0.95
MIN_DISTINCT = 16
# The comb power a lattice's readings reach (≥ 0.9 on the bench's lattices; readings without one
# stay below 0.2), and the largest P the fraction search tries (P ≈ step · D, D ≤ 2048).
MIN_COMB = 0.5
MAX_SEARCH_P = 1 << 17
SEARCH_CELLS = 1 << 20  # (fraction, reading) pairs per array operation in the fraction search


# The bits per reading a frame flag must save on the training frames to be used, and a lattice
# found on a stretch of the training readings only (a resolution change) must save in all.
MIN_FRAME_GAIN = 0.01
MIN_PARTIAL_GAIN = 0.05
# ... and put this share of the training frames wholly on it. Only whole steps (D = 1) count: a
# coarser resolution, not a unit conversion that holds now and then (Sand Point's wind speeds are
# whole knots for a few weeks; coding them so all year costs 2.5 %).
MIN_PARTIAL_FRAMES = 0.25
# ... and hold now: on this share of the frames in the last RECENT_SHARE of the training readings.
# A resolution change is a regime change, and the frames to come are in the latest regime: the CGM
# set's glucose readings are all even for its first third and not after, and coding the rest with
# that lattice costs 4 % (its current, even from month 2 on, gains 4 %).
MIN_RECENT_FRAMES = 0.5
MIN_RECENT_G = PROB_TOTAL // 16  # the least frame flag frequency such a lattice is given (flags)
RECENT_SHARE = 0.125


def identity(channels: int) -> np.ndarray:
    return np.tile(np.array((*IDENTITY, 0), dtype=np.int64), (channels, 1))


def nothing(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`find_all` returns for readings on no lattice: identities, no frame flags."""
    return identity(channels), np.zeros(channels, dtype=np.int64)


def check(vmap: np.ndarray) -> str | None:
    """What is wrong with a C×5 lattice array, or None."""
    if vmap.ndim != 2 or vmap.shape[1] != FIELDS:
        return f"value lattice has shape {vmap.shape}, expected C×{FIELDS}"
    for c, (p, q, d, mode, f) in enumerate(vmap.tolist()):
        if mode == NONE:
            if (p, q, d, f) != (*IDENTITY[:3], 0):
                return f"value lattice of channel {c}: mode 0 must be stored as (1, 0, 1, 0, 0)"
        elif mode in (FLOOR, TRUNC):
            if not (1 <= d <= MAX_D and 2 * d <= p <= MAX_P and 0 <= q < p):
                return f"value lattice of channel {c}: needs 1 ≤ D ≤ 2^20, 2·D ≤ P ≤ 2^24, 0 ≤ Q < P"
            if mode == TRUNC and q:
                return f"value lattice of channel {c}: a truncating lattice must pass through zero (Q = 0)"
            if not 1 <= f < PROB_TOTAL:
                return f"value lattice of channel {c}: off-lattice frequency {f} outside 1..4095"
        else:
            return f"value lattice of channel {c}: unknown mode {mode}"
    return None


def used(vmap: np.ndarray) -> bool:
    return bool(np.any(vmap[:, 3] != NONE))


def value(k: np.ndarray, vmap: np.ndarray) -> np.ndarray:
    """``L(k)`` per channel (last axis of k = channels)."""
    p, q, d, mode = (vmap[:, i] for i in range(4))
    n = p * k + q
    fl = n // d
    tr = np.where(n < 0, -((-n) // d), fl)
    return np.where(mode == TRUNC, tr, np.where(mode == FLOOR, fl, k))


def index(x: np.ndarray, vmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reading ``x`` → (index ``k``, jitter ``j ≥ 0``) with ``x = L(k) + j`` (closed forms, docs/codec.md)."""
    p, q, d, mode = (vmap[:, i] for i in range(4))
    up = (d * x + d - 1 - q) // p
    k = np.where((mode == TRUNC) & (x < 0), (d * x - q) // p, up)
    k = np.where(mode == NONE, x, k)
    return k, x - value(k, vmap)


def nearest(x: np.ndarray, vmap: np.ndarray) -> np.ndarray:
    """The lattice value nearest each reading (the lower one on a tie); readings unchanged on a
    channel without a lattice. Generated and estimated readings use it: a real sensor on a lattice
    never reports a value between two of its points."""
    k, j = index(x, vmap)
    low, high = value(k, vmap), value(k + 1, vmap)
    return np.where((j != 0) & (high - x < x - low), high, low)


def gap(k: np.ndarray, vmap: np.ndarray) -> np.ndarray:
    """``L(k+1) − L(k)``: how many readings share index k (the jitter's range)."""
    return value(k + 1, vmap) - value(k, vmap)


def bit_length(v: np.ndarray) -> np.ndarray:
    """Bits needed for 0..v (0 for v ≤ 0), elementwise."""
    v = np.asarray(v, dtype=np.int64)
    bits = np.zeros_like(v)
    for b in range(40):
        bits += (v >> b) > 0
    return bits


def _freq(hits: int, n: int) -> int:
    """A flag's frequency (of 4096) from ``hits`` of ``n``: (hits + 1) / (n + 2), never 0 (an unseen
    case must stay codable) and at most one half."""
    return min(max(round(PROB_TOTAL * (hits + 1) / (n + 2)), 1), PROB_TOTAL // 2)


def flag_bits(hit: np.ndarray, freq: int) -> float:
    """Ideal bits of coding the boolean array ``hit`` with a flag of frequency ``freq``."""
    k = int(np.count_nonzero(hit))
    return -k * np.log2(freq / PROB_TOTAL) - (hit.size - k) * np.log2(1 - freq / PROB_TOTAL)


def _framed(off: np.ndarray, n: int) -> np.ndarray:
    """The off-lattice marks of a time series as frames of ``n`` (the last, partial one padded)."""
    pad = (-len(off)) % n
    return np.concatenate([off, np.zeros(pad, dtype=bool)]).reshape(-1, n)


def flags(found: tuple[int, int, int, int], column: np.ndarray, n: int) -> tuple[int, int, float]:
    """The off-lattice flag frequency ``F``, the frame flag frequency ``G`` (0: none) and the flags'
    bits per reading on the training readings, framed by ``n``.

    Without a frame flag ``F`` is the share of readings off the lattice; with one, ``G`` is the
    share of frames holding any and ``F`` the share within those frames. The frame flag is used
    where it saves ``MIN_FRAME_GAIN`` bits per reading: off readings that come in stretches."""
    col = np.asarray(column, dtype=np.int64)
    if found[3] == NONE or not len(col):
        return 0, 0, 0.0
    _k, j = index(col[:, None], np.array([[*found, 1]], dtype=np.int64))
    off = j[:, 0] != 0
    f_all = _freq(int(off.sum()), len(off))
    plain = flag_bits(off, f_all)
    fr = _framed(off, n)
    some = fr.any(axis=1)
    # At most one half, as F. For a lattice that holds for stretches (a resolution change), G is
    # then the latest regime's share, at least MIN_RECENT_G: the frames to come are in that regime
    # (isig's coarse test half paid 1 bit per frame at its training share, capped; now 0.09 bits:
    # 0.3–1.4 % of its bytes). Should the resolution go back, a frame pays 4 bits until a retrain.
    g = _freq(int(some.sum()), len(some))
    f_in = _freq(int(fr[some].sum()), int(some.sum()) * n)
    framed = flag_bits(some, g) + flag_bits(fr[some], f_in)
    if plain - framed >= MIN_FRAME_GAIN * len(col):
        if np.mean(off) > 1.0 - MIN_COVER:  # a lattice for stretches: the latest regime's share
            recent = some[-max(1, int(len(some) * RECENT_SHARE)) :]
            g = max(_freq(int(recent.sum()), len(recent)), MIN_RECENT_G)
        return f_in, g, framed / len(col)
    return f_all, 0, plain / len(col)


def with_flag(
    found: tuple[int, int, int, int], column: np.ndarray, n: int | None = None
) -> tuple[tuple[int, int, int, int, int], int]:
    """A found lattice with its off-lattice flag frequency, and its frame flag frequency (0 without
    ``n``: revision 6's per-reading flags only)."""
    if found[3] == NONE:
        return (*IDENTITY, 0), 0
    if n is None:
        col = np.asarray(column, dtype=np.int64)
        _k, j = index(col[:, None], np.array([[*found, 1]], dtype=np.int64))
        return (*found, _freq(int(np.count_nonzero(j)), len(col))), 0
    f, g, _bits = flags(found, column, n)
    return (*found, f), g


def _delta_entropy(x: np.ndarray) -> float:
    """Order-0 entropy in bits of a series' first differences, summed: what a lattice changes."""
    _v, counts = np.unique(np.diff(x), return_counts=True)
    pr = counts / counts.sum()
    return float(-(counts * np.log2(pr)).sum())


def saving(found: tuple[int, int, int, int], column: np.ndarray, n: int) -> float:
    """Estimated bits per reading a lattice saves on these readings: the order-0 cost of the
    readings' changes less that of the indices' changes, the flags and the off readings' jitter
    bits (the index saves about log2 of the step where changes are wide, less where they are small
    against the step)."""
    col = np.asarray(column, dtype=np.int64)
    if found[3] == NONE or len(col) < 2:
        return 0.0
    vm = np.array([[*found, 1]], dtype=np.int64)
    k, j = index(col[:, None], vm)
    off = j[:, 0] != 0
    jitter = float(np.where(off, bit_length(gap(k, vm)[:, 0] - 2), 0).sum())
    gain = _delta_entropy(col) - _delta_entropy(k[:, 0]) - jitter
    return gain / len(col) - flags(found, col, n)[2]


def find_partial(column: np.ndarray, n: int) -> tuple[int, int, int, int]:
    """A lattice that holds for stretches of the readings only (a sensor whose resolution changed),
    else the identity: of the whole-step lattices found on halves, quarters and eighths of the
    readings that hold ``MIN_PARTIAL_FRAMES`` of the frames (and ``MIN_RECENT_FRAMES`` of the latest
    ones), the one that saves most over all of them with frame flags, if it saves
    ``MIN_PARTIAL_GAIN`` bits per reading."""
    col = np.asarray(column, dtype=np.int64)
    cands = set()
    for parts in (2, 4, 8):
        for seg in np.array_split(col, parts):
            if len(seg) >= 4 * MIN_DISTINCT:
                found = find(seg)
                if found[3] != NONE and found[2] == 1:
                    cands.add(found)
    best: tuple[float, tuple[int, int, int, int]] = (MIN_PARTIAL_GAIN, IDENTITY)
    for cand in sorted(cands):
        _k, j = index(col[:, None], np.array([[*cand, 1]], dtype=np.int64))
        on = ~_framed(j[:, 0] != 0, n).any(axis=1)
        recent = on[-max(1, int(len(on) * RECENT_SHARE)) :]
        if np.mean(on) < MIN_PARTIAL_FRAMES or np.mean(recent) < MIN_RECENT_FRAMES:
            continue
        gain = saving(cand, col, n)
        if gain > best[0]:
            best = (gain, cand)
    return best[1]


def _cover(u: np.ndarray, w: np.ndarray, p: int, d: int, mode: int, zero: bool = False) -> tuple[int, float]:
    """Best offset Q for step P/D and the sample share it puts on the lattice.

    Reading u is on the floor lattice iff (Q − D·u) mod P < D (some P·k + Q in [D·u, D·u + D − 1]);
    on the trunc lattice a negative u needs P·k + Q in [D·u − D + 1, D·u] instead. Each reading
    thus admits a cyclic interval of D offsets; the best offset is where most of them overlap, found
    by sweeping their ends (O(len(u) log len(u)), whatever P)."""
    r = (d * u) % p
    start = np.where((mode == TRUNC) & (u < 0), (r - d + 1) % p, r)
    end = start + d
    wrap = end > p
    if mode == TRUNC or zero:  # trunc: through zero (see check); offset 0 alone, no sweep needed
        return 0, float(w[start == 0].sum() + w[wrap].sum())
    # The cover changes only where an interval starts or ends: a sweep over those (a few hundred
    # distinct readings), not over all P offsets (P reaches thousands; this ran 10^5 times a training).
    pos = np.concatenate([start, np.minimum(end, p), np.zeros(int(wrap.sum()), np.int64), end[wrap] - p])
    val = np.concatenate([w, -w, w[wrap], -w[wrap]])
    inside = pos < p
    at, slot = np.unique(pos[inside], return_inverse=True)
    cover = np.cumsum(np.bincount(slot, val[inside], len(at)))  # from each ``at`` to the next
    i = int(np.argmax(cover)) if len(cover) else 0
    if not len(cover) or cover[i] <= 0.0:
        return 0, 0.0
    return int(at[i]), float(cover[i])


def _covers_at_zero(u: np.ndarray, w: np.ndarray, cands: list[tuple[int, int, int]]) -> np.ndarray:
    """:func:`_cover`'s share at offset 0 for many (P, D, mode) at once: what the lattices through
    zero need, as one array operation instead of one call per fraction."""
    if not cands:
        return np.zeros(0)
    c = np.asarray(cands, dtype=np.int64)
    p, d, mode = c[:, :1], c[:, 1:2], c[:, 2:3]
    r = (d * u[None, :]) % p
    start = np.where((mode == TRUNC) & (u[None, :] < 0), (r - d + 1) % p, r)
    return ((start == 0) | (start + d > p)) @ w


def _comb_step(vals: np.ndarray, guess: float) -> tuple[float, float]:
    """The step whose comb best fits the distinct readings: argmax |mean exp(2πi·x/a)|, coarse then
    fine (a reading on a lattice of step a sits within 1/a of a cycle's start, in either mode), and
    that comb's power (near 1 on a lattice, near 0 for readings that merely have gaps)."""
    x = vals.astype(np.float64)
    span = max(float(x[-1] - x[0]), 1.0)
    lo, hi, best, top = guess * 0.93, guess * 1.07, guess, 0.0
    for _ in range(4):
        cand = np.linspace(lo, hi, 801)
        power = np.abs(np.exp(2j * np.pi * x[None, :] / cand[:, None]).mean(axis=1))
        best, top = float(cand[int(np.argmax(power))]), float(power.max())
        width = (hi - lo) / 800 * 4
        lo, hi = best - width, best + width
        if width < best * best / span * 1e-3:
            break
    return best, top


def find(column: np.ndarray) -> tuple[int, int, int, int]:
    """The lattice one channel's training readings sit on (``MIN_COVER`` of them), else the identity.

    The step is estimated from the distinct readings (least squares of the readings on their
    estimated indices), then the fractions P/D within a few standard errors of it, D ≤ 2048, are
    tried in both modes with their best offset; the first (simplest) that covers every reading
    wins, else the best-covering one if it reaches ``MIN_COVER``."""
    vals, counts = np.unique(np.asarray(column, dtype=np.int64), return_counts=True)
    if len(vals) < MIN_DISTINCT:
        return IDENTITY
    # The step is read off the common readings: a few off-lattice ones (TMY3 fills a few hours
    # that were never whole °F) would otherwise hide it behind gaps of 1.
    common = vals[counts >= max(1.0, 0.1 * float(np.median(counts)))]  # all, where readings never repeat
    if len(common) < MIN_DISTINCT:
        return IDENTITY
    gaps = np.diff(common)
    # Neighbouring lattice readings are floor(a) or ceil(a) apart: the commonest gap (≥ 2) and its
    # neighbours give the first guess; a few recurring off-lattice readings add gaps of 1.
    if np.mean(gaps == 1) > 0.1:
        return IDENTITY
    wide = gaps[gaps >= 2]
    if len(wide) < MIN_DISTINCT // 2:
        return IDENTITY
    mode_gap = int(np.bincount(wide).argmax())
    a0, power = _comb_step(common, float(np.mean(wide[np.abs(wide - mode_gap) <= 1])))
    if power < MIN_COMB:  # no common step: skip the fraction search (seconds on wide gaps)
        return IDENTITY
    span = float(vals[-1] - vals[0]) / a0 or 1.0
    tol = 4.0 * a0 / span
    total = float(counts.sum())
    w = counts.astype(np.float64)
    # First the lattices through zero (an ADC scale: readings = counts · P / D, rounded either
    # way), then any offset (a unit conversion such as °F → °C). A simpler fraction with an offset
    # can fit the training range exactly and miss readings beyond it (802/81 + 800 for 1000/101).
    best: tuple[float, tuple[int, int, int, int]] = (0.0, IDENTITY)
    top_d = max(1, min(2048, int(MAX_SEARCH_P / a0)))
    block = max(1, SEARCH_CELLS // (6 * len(vals)))  # denominators per array operation (~8 MB)
    for zero in (True, False):
        for d0 in range(1, top_d + 1, block):
            cands = [
                (p, d, mode)
                for d in range(d0, min(d0 + block, top_d + 1))
                for p in (round(a0 * d) - 1, round(a0 * d), round(a0 * d) + 1)
                if 2 * d <= p <= MAX_P and abs(p / d - a0) <= tol
                for mode in (TRUNC, FLOOR)  # a tie (no negative readings) goes to C's conversion
            ]
            at_zero = _covers_at_zero(vals, w, cands)  # every lattice through zero, and trunc's
            last_d = None
            for i, (p, d, mode) in enumerate(cands):  # in order: the simplest that covers all wins
                if last_d is not None and d != last_d and best[0] >= 1.0 - 1e-12:
                    break
                last_d = d
                if zero or mode == TRUNC:
                    q, cov = 0, float(at_zero[i])
                else:
                    q, cov = _cover(vals, w, p, d, mode)
                if cov / total > best[0] + 1e-12:
                    best = (cov / total, (p, q, d, mode))
            if best[0] >= 1.0 - 1e-12:
                break
        if best[0] >= 1.0 - 1e-12:
            break
    if best[0] < MIN_COVER:
        return IDENTITY
    vm = np.array([[*best[1], 1]], dtype=np.int64)
    _k, j = index(np.asarray(column, dtype=np.int64)[:, None], vm)
    return best[1] if float(np.mean(j == 0)) >= MIN_COVER else IDENTITY


def find_all(q: np.ndarray, n: int | None = None, partial: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """C×5 lattices (with their flag frequencies) for a quantised series (samples × channels), and
    the C frame flag frequencies (all 0 without ``n``, the samples per frame: revision 6). With
    ``n``, a channel without a lattice over all its readings may take one that holds for stretches
    (:func:`find_partial`) unless ``partial`` is False."""
    rows, gates = [], []
    for c in range(q.shape[1]):
        found = find(q[:, c])
        if found[3] == NONE and n is not None and partial:
            found = find_partial(q[:, c], n)
        row, g = with_flag(found, q[:, c], n)
        rows.append(row)
        gates.append(g)
    return np.array(rows, dtype=np.int64).reshape(-1, FIELDS), np.array(gates, dtype=np.int64)


def partly(q: np.ndarray, vmap: np.ndarray) -> np.ndarray:
    """Per channel whether its lattice holds for stretches only (under ``MIN_COVER`` of the readings:
    one :func:`find_partial` gave, as :func:`find` never does)."""
    _k, j = index(np.asarray(q, dtype=np.int64), vmap)
    return (vmap[:, 3] != NONE) & (np.mean(j == 0, axis=0) < MIN_COVER)


def check_frames(vframe: np.ndarray, vmap: np.ndarray) -> str | None:
    """What is wrong with the C frame flag frequencies of revision 7, or None."""
    if vframe.shape != (len(vmap),):
        return f"frame flags have shape {vframe.shape}, expected ({len(vmap)},)"
    for c, (g, mode) in enumerate(zip(vframe.tolist(), vmap[:, 3].tolist(), strict=True)):
        if g and mode == NONE:
            return f"frame flag of channel {c}: set on a channel without a value lattice"
        if not 0 <= g < PROB_TOTAL:
            return f"frame flag of channel {c}: frequency {g} outside 0..4095"
    return None
