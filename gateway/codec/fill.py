"""Gap filling: the most likely values of missing cells under the model's time structure.

Known cells are mapped to normal scores (hour-of-day profile + quantile map, see
:mod:`gateway.codec.generate`); the missing ones are the least-squares solution of the AR model's
whitened innovations around them — the conditional mean of a Gaussian AR process given every
known sample near the gap, on both sides and in the other channels. Mapped back, that is the
conditional median of each value, which is what a small mean absolute error asks for. Gaps next
to each other (within the longest lag) are solved together; very long runs in chunks.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from gateway.codec import bridge, increments
from gateway.codec.csvio import read_header
from gateway.codec.errors import CodecError, DataError
from gateway.codec.generate import (
    FILL_CV_CHUNK,
    FILL_GAPS,
    TimeModel,
    clock_at,
    clock_of,
    learn,
    parse_times,
    regular_grid,
    time_model,
)

if TYPE_CHECKING:
    from gateway.codec.model import Model
    from gateway.codec.schema import Schema

log = logging.getLogger(__name__)
STDIO = "-"
MAX_RUN = bridge.MAX_RUN  # rows solved in one system; longer runs go in consecutive chunks
PRIOR = 1e-3  # weak pull of every unknown score towards 0 (keeps the system well posed)


def _solve_cluster(tm: TimeModel, z: np.ndarray, rows: np.ndarray) -> None:
    """Fill NaN cells of z in ``rows`` (ascending, contiguous-ish) in place."""
    c = tm.channels
    lags = tm.lags
    n_rows = len(z)
    sub = z[rows]
    miss = np.isnan(sub)
    idx = np.full(sub.shape, -1, dtype=np.int64)
    idx[miss] = np.arange(int(miss.sum()))
    nu = int(miss.sum())
    if nu == 0:
        return
    pos = {int(r): i for i, r in enumerate(rows.tolist())}
    eq_rows = sorted({int(r) + d for r in rows.tolist() for d in [0, *lags] if int(r) + d < n_rows})
    linv = np.linalg.inv(tm.chol + 1e-9 * np.eye(c))
    blocks = []
    rhs = []
    own = np.zeros(nu, dtype=bool)
    # innovation at row t: z_t - sum_j ar_j z_{t-lag_j}
    terms = [(0, -np.eye(c))] + [(lag, tm.ar[j]) for j, lag in enumerate(lags)]
    zero = np.zeros(c)
    for t in eq_rows:
        coef = np.zeros((c, nu))
        const = np.zeros(c)
        usable = True
        for lag, w in terms:
            r = t - lag
            vals = z[r] if r >= 0 else zero  # before the series: the mean score (keeps the short lags)
            if r in pos:
                unk = idx[pos[r]]
                known = unk < 0
                const += w[:, known] @ sub[pos[r], known] if known.any() else 0.0
                for ch in np.flatnonzero(~known).tolist():
                    coef[:, unk[ch]] += w[:, ch]
                    if lag == 0:
                        own[unk[ch]] = True
            elif np.isnan(vals).any():
                usable = False  # refers to a cell of another unsolved gap: skip this equation
                break
            else:
                const += w @ vals
        if usable and coef.any():
            blocks.append(linv @ coef)
            rhs.append(-(linv @ const))
    prior = np.where(own, PRIOR, 1.0)
    a = np.concatenate([*blocks, np.diag(prior)]) if blocks else np.diag(prior)
    b = np.concatenate([*rhs, np.zeros(nu)]) if rhs else np.zeros(nu)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    sub[miss] = sol[idx[miss]]
    z[rows] = sub


def fill_scores(tm: TimeModel, z: np.ndarray) -> np.ndarray:
    """Fill every NaN of a T × C score series; returns a new array. The conditional mean under the
    model's fill AR (else its generation AR) by :mod:`gateway.codec.bridge`; a generation AR whose
    day lag makes its covariance too large to compute (minute data) solves the innovations instead."""
    f = tm.fill
    ar, lags, chol = (f.ar, f.lags, f.chol) if f is not None else (tm.ar, tm.lags, tm.chol)
    if bridge.usable(lags, tm.channels):
        return bridge.fill_scores(ar, lags, chol, z)
    z = np.array(z, dtype=np.float64)
    bad = np.flatnonzero(np.isnan(z).any(axis=1))
    if len(bad) == 0:
        return z
    m = max(tm.lags)
    # clusters: unknown rows whose innovation equations overlap are solved together
    start = 0
    for i in range(1, len(bad) + 1):
        if i == len(bad) or bad[i] - bad[i - 1] > m or i - start >= MAX_RUN:
            _solve_cluster(tm, z, bad[start:i])
            start = i
    return z


def _fill_with(tm: TimeModel, x: np.ndarray, clock: np.ndarray | None) -> np.ndarray:
    """Missing cells (NaN) of readings x filled under a time model (unrounded)."""
    miss = np.isnan(x)
    mu, sd = tm.profile(clock, len(x))
    safe = np.where(sd > 1e-9, sd, 1.0)
    u = np.where(sd > 1e-9, (x - mu) / safe, 0.0)
    z = tm.to_z(np.nan_to_num(u), clock)
    z[sd <= 1e-9] = 0.0  # cells the profile fixes (night irradiance): no information, the mean score
    z[miss] = np.nan
    z = fill_scores(tm, z)
    out = np.where(miss, mu + sd * tm.from_z(z, clock), x)
    if tm.increments is not None:  # channels that wander: filled (partly) on their changes instead
        inc = tm.increments
        cols = list(inc.channels)
        w = np.asarray(inc.weights())
        blend = w * inc.fill(x)[:, cols] + (1 - w) * out[:, cols]
        out[:, cols] = np.where(miss[:, cols], blend, out[:, cols])
    return out


def fill_series(
    model: Model, x: np.ndarray, clock: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Quantised series with NaN for missing cells (T × C) → (filled int64 series, estimated mask).

    ``clock``: hour of day and day of year of each row (T × 2, see generate.clock_of; without it
    the profile's average is used). A model without time structure interpolates linearly per channel.
    """
    p = model.params
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != p.channels:
        raise CodecError(f"gap filling needs rows × {p.channels} channels")
    miss = np.isnan(x)
    known_rows = (~miss).any(axis=1)
    if not known_rows.any():
        raise DataError("gap filling needs at least one known value")
    tm = time_model(model)
    if tm is None:
        out = x.copy()
        t = np.arange(len(x))
        for ch in range(p.channels):
            ok = ~miss[:, ch]
            out[:, ch] = np.interp(t, t[ok], x[ok, ch]) if ok.any() else model.from_index(p.base)[ch]
    else:
        out = _fill_with(tm, x, clock)
    out = np.clip(np.rint(out), p.lo, p.hi).astype(np.int64)
    out = np.where(miss, model.snap(out), out)  # estimates on a lattice sensor's values only
    return out, miss


INC_LAGS = (2, 4, 8, 16, 32)  # autocovariance lengths tried for filling on increments
INC_GAIN = 0.98  # a channel is filled on its increments only when that cuts the error by ≥ 2 %
INC_WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # the increments fill's weights tried against the score AR's
INC_BLOCKS = 12  # contiguous blocks of the training rows, taken alternately as two folds


def _cv_gaps(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Gaps of FILL_GAPS rows, 2–3 gap lengths apart, inside a chunk of n rows."""
    lo, hi = FILL_GAPS
    out, pos = [], 2 * hi
    while pos + 3 * hi < n:
        length = int(rng.integers(lo, hi + 1))
        out.append((pos, length))
        pos += length + 3 * hi + int(rng.integers(0, hi))
    return out


def _block_acov(q: np.ndarray, block: np.ndarray, fold: int) -> np.ndarray:
    """The changes' autocovariance over the blocks of one fold (changes within a block only)."""
    parts = [q[block == k] for k in range(fold, int(block.max()) + 1, 2)]
    total = sum(increments.learn(part, max(INC_LAGS)) * (len(part) - 1) for part in parts)
    return total / max(sum(len(part) - 1 for part in parts), 1)


def learn_increments(
    model: Model, q: np.ndarray, times: list[str] | None = None
) -> increments.Increments | None:
    """The channels whose gaps are better filled (partly) on their increments than by the score AR
    alone, with their autocovariance of changes and the blend's weight; None when there are none
    (or no time structure).

    Two folds of alternate contiguous blocks (INC_BLOCKS of the training rows): the time model and
    the autocovariance are learned on one fold, and gaps of FILL_GAPS rows cut out of the other (in
    chunks of FILL_CV_CHUNK rows, each filled alone) are filled by the score AR and by blends of it
    with the increments fill (INC_WEIGHTS × INC_LAGS), compared per channel by mean absolute error.
    A channel takes the best blend only when it beats the score AR by INC_GAIN. Blends, not a
    choice: the folds differ from each other (and from what the gateway will meet) more than the
    two methods do on some channels, and there a mixture loses little where a wrong choice loses
    5–12 % (Daphnet, Greensboro's temperature: docs/codec.md)."""
    tm = time_model(model)
    q = np.asarray(q, dtype=np.float64)
    if tm is None or len(q) < INC_BLOCKS * FILL_CV_CHUNK:
        return None
    clock = None
    if times is not None and tm.interval is not None:
        try:
            secs, t0 = parse_times(times)
            clock = clock_of(t0, secs)
        except DataError:
            clock = None
    c = q.shape[1]
    block = np.minimum(np.arange(len(q)) * INC_BLOCKS // len(q), INC_BLOCKS - 1)
    err_ar = np.zeros(c)
    err_inc = np.zeros((len(INC_WEIGHTS), len(INC_LAGS), c))
    rng = np.random.default_rng(0)
    for fold in (0, 1):
        fit = np.flatnonzero(block % 2 == fold)
        try:
            other = learn(q[fit], None if times is None else [times[i] for i in fit], tune=False)
        except DataError:
            return None
        acov = _block_acov(q, block, fold)
        for k in range(1 - fold, INC_BLOCKS, 2):
            span = np.flatnonzero(block == k)
            for start in range(span[0], span[-1] + 2 - FILL_CV_CHUNK, FILL_CV_CHUNK):
                rows = np.arange(start, start + FILL_CV_CHUNK)
                truth = q[rows]
                x = truth.copy()
                for pos, length in _cv_gaps(len(rows), rng):
                    x[pos : pos + length] = np.nan
                cut = np.isnan(x)
                by_ar = _fill_with(other, x, None if clock is None else clock[rows])
                err_ar += np.abs(np.rint(by_ar) - truth).sum(axis=0, where=cut)
                for i, lags in enumerate(INC_LAGS):
                    est = increments.Increments(tuple(range(c)), tuple(acov[:, : lags + 1])).fill(x)
                    for j, w in enumerate(INC_WEIGHTS):
                        blend = np.rint(w * est + (1 - w) * by_ar)
                        err_inc[j, i] += np.abs(blend - truth).sum(axis=0, where=cut)
    flat = err_inc.reshape(-1, c)
    best = flat.argmin(axis=0)  # per channel: (weight, lags) as one index
    log.debug("gap filling: score AR %s, increments %s", err_ar.tolist(), flat[best, range(c)].tolist())
    wins = [ch for ch in range(c) if flat[best[ch], ch] < INC_GAIN * err_ar[ch]]
    if not wins:
        return None
    acov = increments.learn(q, max(INC_LAGS))
    pick = [divmod(int(best[ch]), len(INC_LAGS)) for ch in wins]  # (weight index, lags index)
    return increments.Increments(
        tuple(wins),
        tuple(acov[ch, : INC_LAGS[li] + 1] for ch, (_, li) in zip(wins, pick, strict=True)),
        tuple(INC_WEIGHTS[wi] for wi, _ in pick),
    )


def fill_gap(
    model: Model,
    history: np.ndarray,
    missing: int,
    after: np.ndarray | None = None,
    end_time: float | None = None,
) -> np.ndarray:
    """Estimates (missing × C) for the rows lost between ``history`` and ``after`` (rows known after
    the gap, optional). ``end_time``: epoch seconds of the last known row given, for the daily profile."""
    p = model.params
    hist = np.asarray(history, dtype=np.float64).reshape(-1, p.channels)
    nxt = (
        np.zeros((0, p.channels))
        if after is None
        else np.asarray(after, dtype=np.float64).reshape(-1, p.channels)
    )
    x = np.concatenate([hist, np.full((missing, p.channels), np.nan), nxt])
    tm = time_model(model)
    clock = None
    if tm is not None and end_time is not None and tm.interval is not None:
        clock = clock_at(tm, end_time + (np.arange(len(x)) - (len(x) - 1)) * tm.interval)
    q, _ = fill_series(model, x, clock)
    return q[len(hist) : len(hist) + missing]


# ---------------------------------------------------------------------------------------- CSV
@dataclass
class Table:
    """A CSV read for filling: values (NaN = missing), the time column and the row count read."""

    x: np.ndarray
    times: list[str] | None
    rows_read: int


def read_gappy_csv(path: str | Path, schema: Schema) -> Table:
    """Like csvio.load_csv (``-``: standard input, a byte-order mark accepted), but blank or NaN
    cells are missing values to fill, not errors."""
    source = "standard input" if str(path) == STDIO else str(path)
    try:
        if str(path) == STDIO:
            return _read_gappy(
                io.StringIO(sys.stdin.buffer.read().decode("utf-8-sig"), newline=""), schema, source
            )
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return _read_gappy(fh, schema, source)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{source}: not a valid CSV file ({exc})") from None


def _read_gappy(fh: TextIO, schema: Schema, source: str) -> Table:
    reader = csv.reader(fh)
    _header, cols, tcol = read_header(reader, schema, source)
    rows: list[list[float]] = []
    times: list[str] = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        vals = []
        for i in cols:
            cell = row[i].strip() if i < len(row) else ""
            try:
                vals.append(float(cell) if cell and cell.lower() != "nan" else np.nan)
            except ValueError:
                raise DataError(f"{source}: row {lineno} has a non-numeric value {cell[:20]!r}") from None
        rows.append(vals)
        if tcol is not None:
            times.append(row[tcol].strip() if tcol < len(row) else "")
    if not rows:
        raise DataError(f"{source}: no data rows")
    x = np.array(rows, dtype=np.float64)
    if np.isinf(x).any():
        raise DataError(f"{source}: row {int(np.argwhere(np.isinf(x))[0][0]) + 2} has an infinite value")
    if tcol is not None and not all(times):
        raise DataError(f"{source}: row {times.index('') + 2} has no time")
    return Table(np.rint(x / schema.steps), times if tcol is not None else None, len(rows))


def write_filled_csv(
    path: str | Path, schema: Schema, q: np.ndarray, estimated: np.ndarray, times: list[str] | None
) -> None:
    """The filled series with a trailing ``estimated`` column (1: a cell of the row was filled)."""
    try:
        fh = sys.stdout if str(path) == STDIO else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        try:
            writer = csv.writer(fh, lineterminator="\n")
            lead = ["time"] if times is not None else []
            writer.writerow([*lead, *schema.names, "estimated"])
            for i, row in enumerate(q):
                stamp = [times[i]] if times is not None else []
                writer.writerow([*stamp, *schema.format_row(row), int(estimated[i])])
        finally:
            if fh is sys.stdout:
                fh.flush()
            else:
                fh.close()
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror}") from None


def fill_table(
    model: Model, table: Table, source: str = "data"
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Insert the rows a regular time column lacks, fill every missing cell.

    Returns (quantised rows, estimated-row mask, times or None)."""
    tm = time_model(model)
    x, times, clock = table.x, table.times, None
    if times is not None and tm is not None and tm.interval is not None:
        secs, t0 = parse_times(times, source)
        if np.any(np.diff(secs) <= 0):
            raise DataError(f"{source}: time column must strictly ascend to fill missing rows")
        k = regular_grid(secs, tm.interval)
        if len(np.unique(k)) != len(k):
            raise DataError(f"{source}: rows closer than the model's {tm.interval:g} s interval")
        if k[-1] - k[0] + 1 > 4 * len(k) + 10_000:
            raise DataError(f"{source}: time gaps too long to fill (beyond 4× the rows given)")
        full = np.full((int(k[-1] - k[0]) + 1, x.shape[1]), np.nan)
        full[k - k[0]] = x
        offsets = np.arange(len(full)) * tm.interval
        grid_t = [t0 + timedelta(seconds=float(s)) for s in offsets]
        given = dict(zip((k - k[0]).tolist(), times, strict=True))
        times = [given.get(i) or _iso(t) for i, t in enumerate(grid_t)]
        clock = clock_of(t0, offsets)
        x = full
    q, miss = fill_series(model, x, clock)
    return q, miss.any(axis=1), times


def _iso(t: datetime) -> str:
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
