"""Time structure for generation and gap filling: sampling interval, daily cycle, cross-channel AR.

A series is modelled as ``x = mean(hour) + scale(hour) · u`` per channel, where the hour-of-day
profile carries the daily cycle (irradiance is exactly zero at night because its night scale is
zero), ``u`` has the training data's own distribution (a monotone map from a normal score ``z``),
and ``z`` follows a vector AR model: a full cross-channel matrix at lag 1, per-channel weights at
the other lags (2.., and one day back when the data have a daily cycle), innovations correlated
across channels through a Cholesky factor. None of this is part of the bitstream: it is stored
as floats in the weight file's ``generation`` metadata, and generation is deterministic per seed.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.codec import bridge
from gateway.codec.bridge import FillAR, fill_ar_from_meta
from gateway.codec.errors import DataError, WeightsError
from gateway.codec.increments import Increments
from gateway.codec.increments import from_meta as increments_from_meta

if TYPE_CHECKING:
    from gateway.codec.model import Model

log = logging.getLogger(__name__)

GEN_FORMAT = "lora-gw-gen/2"
SLOTS = 24  # hour-of-day bins of the daily profile, centred on whole hours
Z_GRID = np.linspace(-3.0, 3.0, 13)  # normal scores at which the anomaly quantiles are stored
MAX_ORDER = 8  # lags 1..p (p chosen by BIC), plus one day back for a daily cycle
MAX_PERIOD = 1440  # the daily lag is used for intervals down to one minute
COPULA_ACF_GAP = 0.1  # lag-1 autocorrelation the quantile map may move before a linear map is used
YEAR_DAYS = 365.25
ANNUAL_SPAN_DAYS = 300  # an annual cycle is fitted only from data spanning most of a year
IMPULSE_STEPS = 4000  # impulse-response terms summed for the stationary moments
TUNE_ROUNDS = 2  # passes over the channels when tuning the day lag (they are coupled)
TUNED_LAG = 24  # its autocorrelation is matched to the data's (one day back in hourly data)
CENSORED_SHARE = 0.005  # training share at a range limit that makes it a saturation, not an extreme
HOUR_MARG_ROWS = 60  # rows an hour bin's own quantile map needs (else the all-hours one)
DAILY_R2 = 0.05  # share of variance the hour-of-day profile must explain to count as a cycle
CROSS_ROUNDS = 8  # rounds matching the generated cross-channel correlations to the training data's
CROSS_TOL = 0.02  # ... until every pair is this close
CROSS_ROWS = 40_000  # rows simulated per round (up to 4 runs as long as the training grid)
FILL_LAGS = (16, 32)  # own-channel AR lengths tried for gap filling (a gait cycle spans ~64 Hz · 0.5 s)
FILL_GAPS = (6, 16)  # gap lengths (rows) the fill AR is chosen on: the issue's
FILL_CV_CHUNK = 256  # rows per cross-validation chunk
FILL_GAIN = 0.97  # a fill AR is stored only when it cuts the held-out bridge error by ≥ 3 %
_CACHE: weakref.WeakKeyDictionary[Any, tuple[dict[str, Any], TimeModel]] = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------------------- time
def parse_times(cells: list[str], source: str = "data") -> tuple[np.ndarray, datetime]:
    """``time`` cells (ISO 8601 or epoch seconds) → (seconds since the first, first as datetime).

    ISO times keep their wall clock (the hour of day is read in the offset they carry); epoch
    seconds are taken as UTC.
    """
    if not cells:
        raise DataError(f"{source}: empty time column")
    first = cells[0].strip()
    try:
        float(first)
        epoch = True
    except ValueError:
        epoch = False
    out = np.empty(len(cells))
    t0: datetime | None = None
    for i, cell in enumerate(cells):
        text = cell.strip()
        try:
            dt = datetime.fromtimestamp(float(text), tz=UTC) if epoch else datetime.fromisoformat(text)
        except (ValueError, OverflowError, OSError):
            raise DataError(
                f"{source}: row {i + 2} time {text!r} is neither ISO 8601 nor epoch seconds"
            ) from None
        if t0 is None:
            t0 = dt
        try:
            out[i] = (dt - t0).total_seconds()
        except TypeError:
            raise DataError(f"{source}: row {i + 2} mixes times with and without a UTC offset") from None
    assert t0 is not None
    return out, t0


def sampling_interval(secs: np.ndarray) -> float | None:
    """Median positive step between rows (seconds), None when it cannot be told."""
    d = np.diff(secs)
    d = d[d > 0]
    return float(np.median(d)) if len(d) else None


def seconds_of_day(t0: datetime) -> float:
    return t0.hour * 3600 + t0.minute * 60 + t0.second + t0.microsecond / 1e6


def hours_of(t0: datetime, secs: np.ndarray) -> np.ndarray:
    """Hour of day (0 ≤ h < 24, wall clock of t0's offset) of each time given as seconds from t0."""
    return ((seconds_of_day(t0) + secs) % 86400.0) / 3600.0


def clock_of(t0: datetime, secs: np.ndarray) -> np.ndarray:
    """(hour of day, day of year from 0) of each time given as seconds from t0: T × 2."""
    secs = np.asarray(secs, dtype=np.float64)
    days = (t0.timetuple().tm_yday - 1 + (seconds_of_day(t0) + secs) / 86400.0) % YEAR_DAYS
    return np.stack([hours_of(t0, secs), days], axis=1)


def clock_at(tm: TimeModel, epochs: np.ndarray) -> np.ndarray:
    """Clock of epoch times, read in the UTC offset of the training data's time column."""
    tz = UTC
    if tm.start is not None:
        tz = datetime.fromisoformat(tm.start).tzinfo or UTC
    epochs = np.asarray(epochs, dtype=np.float64)
    t0 = datetime.fromtimestamp(float(epochs[0]), tz=tz)
    return clock_of(t0, epochs - epochs[0])


def format_times(t0: datetime, interval: float, n: int) -> list[str]:
    """n ISO 8601 stamps from t0 every ``interval`` seconds (microseconds only when needed)."""
    spec = "seconds" if float(interval).is_integer() and t0.microsecond == 0 else "microseconds"
    out = []
    for i in range(n):
        text = (t0 + timedelta(seconds=i * interval)).isoformat(timespec=spec)
        out.append(text[:-6] + "Z" if text.endswith("+00:00") else text)
    return out


def regular_grid(secs: np.ndarray, interval: float) -> np.ndarray:
    """Index of each row on the regular time grid (rows closer than half an interval collapse)."""
    return np.rint(secs / interval).astype(np.int64)


# ---------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class TimeModel:
    """Generation parameters (all in quantised units; C channels, S = 1 or 24 profile bins each).

    mean[C, S], scale[C, S]   hour-of-day profile of level and spread (S = 1: no daily cycle)
    marg[C, Q] or [C, S, Q]   anomaly quantiles at the normal scores Z_GRID (ascending), per hour
                              bin when S = 24: the shape of the spread changes with the hour
                              (humidity saturates at 100 % at night, not in the afternoon)
    lags                      AR lags; lags[0] = 1
    ar[L, C, C]               AR weights at each lag (across channels up to the fitted order, own
                              channel only at the day lags)
    chol[C, C]                lower Cholesky factor of the innovation covariance
    interval                  sampling interval in seconds (None: unknown)
    start                     first training time, ISO 8601 (None: unknown)
    annual[C, 2]              cos/sin weights of the annual cycle of the level (zeros: none)
    zscale[C]                 stationary spread of the AR scores, divided out when generating
    censored[C, 2]            1 where the training data pile up at the low / high range limit
                              (saturation: a value past it is held there); 0 where the limit is
                              only the extreme seen (a value past it is folded back inside)
    fill                      the AR model gap filling uses instead of ``ar`` (None: ``ar``)
    gen_chol[C, C]            the innovations' Cholesky factor generation uses, chosen so that
                              generated values have the training data's cross-channel
                              correlations (None: ``chol``, the fitted one, which filling uses)
    increments                the channels gap filling fills on their changes instead
                              (:mod:`gateway.codec.increments`: readings that wander like a
                              random walk, where the score AR loses to interpolation; None: none)
    """

    mean: np.ndarray
    scale: np.ndarray
    marg: np.ndarray
    lags: tuple[int, ...]
    ar: np.ndarray
    chol: np.ndarray
    interval: float | None
    start: str | None
    annual: np.ndarray | None = None
    zscale: np.ndarray | None = None
    censored: np.ndarray | None = None
    fill: FillAR | None = None
    gen_chol: np.ndarray | None = None
    increments: Increments | None = None

    @property
    def channels(self) -> int:
        return self.mean.shape[0]

    @property
    def daily(self) -> np.ndarray:
        """Per channel: whether it has a daily profile."""
        return np.ptp(self.mean, axis=1) > 0

    def profile(self, clock: np.ndarray | None, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale) of n rows at their clock (T × 2: hour, day of year; None: unknown, the
        profile's average). Hour bins are interpolated linearly around the clock."""
        if clock is None or self.mean.shape[1] == 1:
            mean = np.tile(self.mean.mean(axis=1), (n if clock is None else len(clock), 1))
            scale = np.tile(np.sqrt((self.scale**2).mean(axis=1)), (len(mean), 1))
        else:
            h = np.asarray(clock[:, 0], dtype=np.float64) % SLOTS
            i0 = np.floor(h).astype(np.int64)
            w = (h - i0)[:, None]
            i1 = (i0 + 1) % SLOTS
            mean = self.mean.T[i0] * (1 - w) + self.mean.T[i1] * w
            scale = self.scale.T[i0] * (1 - w) + self.scale.T[i1] * w
        if clock is not None and self.annual is not None and np.any(self.annual):
            basis = _annual_basis(clock[:, 1], self.annual.shape[1] // 2)
            mean = mean + basis @ self.annual.T * self._relative(scale)
        return mean, scale

    def _relative(self, scale: np.ndarray) -> np.ndarray:
        """Scale relative to the channel's average: the annual cycle moves the level in proportion
        (so irradiance stays zero at night while its days grow and shrink with the seasons)."""
        avg = np.sqrt((self.scale**2).mean(axis=1))
        return scale / np.where(avg > 0, avg, 1.0)

    def knots(self, clock: np.ndarray | None, n: int) -> np.ndarray:
        """Quantile knots of each row (T × C × Q): the hour bins' maps blended linearly around the
        clock (a blend of maps on the same normal scores is again one, so to_z inverts from_z)."""
        if self.marg.ndim == 2:
            return np.broadcast_to(self.marg, (n, *self.marg.shape))
        if clock is None:
            return np.broadcast_to(self.marg.mean(axis=1), (n, self.channels, len(Z_GRID)))
        h = np.asarray(clock[:, 0], dtype=np.float64) % SLOTS
        i0 = np.floor(h).astype(np.int64)
        w = (h - i0)[:, None, None]
        m = self.marg.transpose(1, 0, 2)  # S × C × Q
        return m[i0] * (1 - w) + m[(i0 + 1) % SLOTS] * w

    def to_z(self, u: np.ndarray, clock: np.ndarray | None = None) -> np.ndarray:
        """Anomalies (T × C) → normal scores through each channel's quantile map at the row's hour."""
        if self.marg.ndim == 2:
            return np.stack([_interp(u[:, c], self.marg[c], Z_GRID) for c in range(self.channels)], axis=1)
        k = self.knots(clock, len(u))
        return _interp_rows(u, k, np.broadcast_to(Z_GRID, k.shape))

    def from_z(self, z: np.ndarray, clock: np.ndarray | None = None) -> np.ndarray:
        if self.marg.ndim == 2:
            return np.stack([_interp(z[:, c], Z_GRID, self.marg[c]) for c in range(self.channels)], axis=1)
        k = self.knots(clock, len(z))
        return _interp_rows(z, np.broadcast_to(Z_GRID, k.shape), k)

    def to_meta(self, digits: int = 4) -> dict[str, Any]:
        def r(a: np.ndarray) -> Any:
            return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(a).tolist()

        return {
            "format": GEN_FORMAT,
            "interval_s": self.interval,
            "start": self.start,
            "mean": r(self.mean),
            "scale": r(self.scale),
            "marginal": r(self.marg),
            "lags": list(self.lags),
            "ar": r(self.ar),
            "chol": r(self.chol),
            "annual": r(self.annual if self.annual is not None else np.zeros((self.channels, 2))),
            "z_scale": r(self.zscale if self.zscale is not None else np.ones(self.channels)),
            **({} if self.censored is None else {"censored": r(self.censored)}),
            **({} if self.fill is None else {"fill": self.fill.to_meta(digits)}),
            **({} if self.gen_chol is None else {"gen_chol": r(self.gen_chol)}),
            **({} if self.increments is None else {"increments": self.increments.to_meta(digits)}),
        }


def _interp(v: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear map, extended linearly past both ends (a fill may leave the training range)."""
    out = np.interp(v, xp, fp)
    lo_slope = (fp[1] - fp[0]) / max(xp[1] - xp[0], 1e-12)
    hi_slope = (fp[-1] - fp[-2]) / max(xp[-1] - xp[-2], 1e-12)
    out = np.where(v < xp[0], fp[0] + (v - xp[0]) * lo_slope, out)
    return np.where(v > xp[-1], fp[-1] + (v - xp[-1]) * hi_slope, out)


def _interp_rows(v: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear map with knots of its own for every cell: v (T × C), xp and fp (T × C × Q,
    xp ascending). Past either end it goes on at the map's overall slope: an hour's map may end
    in a point mass (humidity at 100 %), whose own end segment would send a held-out value just
    past it to an absurd score."""
    q = xp.shape[-1]
    j = np.clip((xp <= v[..., None]).sum(axis=-1) - 1, 0, q - 2)[..., None]
    x0, x1 = np.take_along_axis(xp, j, -1)[..., 0], np.take_along_axis(xp, j + 1, -1)[..., 0]
    f0, f1 = np.take_along_axis(fp, j, -1)[..., 0], np.take_along_axis(fp, j + 1, -1)[..., 0]
    out = f0 + (np.clip(v, x0, x1) - x0) * (f1 - f0) / np.maximum(x1 - x0, 1e-12)
    lo_x, hi_x, lo_f, hi_f = xp[..., 0], xp[..., -1], fp[..., 0], fp[..., -1]
    slope = (hi_f - lo_f) / np.maximum(hi_x - lo_x, 1e-12)
    out = np.where(v < lo_x, lo_f + (v - lo_x) * slope, out)
    return np.where(v > hi_x, hi_f + (v - hi_x) * slope, out)


def _annual_basis(days: np.ndarray, harmonics: int = 1) -> np.ndarray:
    """cos/sin of the day of year (one harmonic: a second one fitted the blocks of one year no better)."""
    w = 2 * np.pi * np.asarray(days, dtype=np.float64) / YEAR_DAYS
    return np.stack([f(k * w) for k in range(1, harmonics + 1) for f in (np.cos, np.sin)], axis=1)


_arr = bridge.meta_array


def _marg_shape(meta: dict[str, Any], c: int, s: int) -> tuple[int, ...]:
    """(C, Q), or (C, S, Q) for per-hour quantile maps (only with an hour profile)."""
    m = meta.get("marginal")
    per_hour = s == SLOTS and isinstance(m, list) and m and isinstance(m[0], list) and m[0]
    per_hour = per_hour and isinstance(m[0][0], list)
    return (c, s, len(Z_GRID)) if per_hour else (c, len(Z_GRID))


def validate(meta: Any, channels: int) -> TimeModel:
    """Check generation metadata of this format and build the model; one-line WeightsError if bad."""
    if not isinstance(meta, dict) or meta.get("format") != GEN_FORMAT:
        raise WeightsError(f"generation metadata: format is not {GEN_FORMAT}")
    c = channels
    try:
        mean = np.asarray(meta.get("mean"), dtype=np.float64)
    except (TypeError, ValueError):
        mean = np.zeros(0)
    s = mean.shape[1] if mean.ndim == 2 and mean.shape[0] == c else -1
    if s not in (1, SLOTS):
        raise WeightsError(f"generation metadata: mean must be {c} rows of 1 or {SLOTS} hour bins")
    lags = meta.get("lags")
    if (
        not isinstance(lags, list)
        or not lags
        or lags[0] != 1
        or not all(isinstance(v, int) and 1 <= v <= MAX_PERIOD for v in lags)
        or sorted(set(lags)) != lags
    ):
        raise WeightsError("generation metadata: lags must be ascending integers starting at 1")
    interval = meta.get("interval_s")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval < 1e8
    ):
        raise WeightsError("generation metadata: interval_s must be a positive number of seconds")
    start = meta.get("start")
    if start is not None:
        try:
            datetime.fromisoformat(start)
        except (TypeError, ValueError):
            raise WeightsError("generation metadata: start is not an ISO 8601 time") from None
    tm = TimeModel(
        mean=_arr(meta, "mean", (c, s)),
        scale=_arr(meta, "scale", (c, s)),
        marg=_arr(meta, "marginal", _marg_shape(meta, c, s)),
        lags=tuple(lags),
        ar=_arr(meta, "ar", (len(lags), c, c)),
        chol=_arr(meta, "chol", (c, c)),
        interval=None if interval is None else float(interval),
        start=start,
        annual=_arr(meta, "annual", (c, 2)) if "annual" in meta else None,
        zscale=_arr(meta, "z_scale", (c,)) if "z_scale" in meta else None,
        censored=_arr(meta, "censored", (c, 2)) if "censored" in meta else None,
        fill=fill_ar_from_meta(meta["fill"], c) if "fill" in meta else None,
        gen_chol=_arr(meta, "gen_chol", (c, c)) if "gen_chol" in meta else None,
        increments=increments_from_meta(meta["increments"], c) if "increments" in meta else None,
    )
    if tm.zscale is not None and np.any(tm.zscale <= 0):
        raise WeightsError("generation metadata: z_scale must be > 0")
    if tm.censored is not None and not np.all((tm.censored == 0) | (tm.censored == 1)):
        raise WeightsError("generation metadata: censored must be 0 or 1")
    if np.any(tm.scale < 0):
        raise WeightsError("generation metadata: scale must be ≥ 0")
    if np.any(np.diff(tm.marg, axis=-1) < 0):
        raise WeightsError("generation metadata: marginal quantiles must ascend")
    for key, f in (("chol", tm.chol), ("gen_chol", tm.gen_chol)):
        if f is not None and (np.any(np.triu(f, 1) != 0) or np.any(np.diag(f) < 0)):
            raise WeightsError(f"generation metadata: {key} must be lower triangular with a diagonal ≥ 0")
    if np.abs(tm.ar).max(initial=0) > 10:
        raise WeightsError("generation metadata: AR weight out of range")
    return tm


def time_model(model: Model) -> TimeModel | None:
    """The model's TimeModel (validated once, cached), or None for an older weight file."""
    gen = model.meta.get("generation")
    if not isinstance(gen, dict) or "format" not in gen:
        return None  # the older {mean, reversion} metadata: Model's own fallback generator
    cached = _CACHE.get(model)
    if cached is None or cached[0] is not gen:
        cached = (gen, validate(gen, len(model.schema)))
        _CACHE[model] = cached
    return cached[1]


# ---------------------------------------------------------------------------------------- learning
def _grid_series(
    q: np.ndarray, secs: np.ndarray | None, interval: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Training rows placed on the regular time grid (NaN where rows are missing) and their hours."""
    x = np.asarray(q, dtype=np.float64)
    if secs is None or interval is None:
        return x, np.arange(len(x), dtype=np.float64)
    k = regular_grid(secs, interval)
    k -= k.min()
    if k.max() > 4 * len(k) + 1000:  # mostly empty grid: the time column is too irregular to use
        raise DataError("time column too irregular: rows cover under a quarter of the time span")
    g = np.full((int(k.max()) + 1, x.shape[1]), np.nan)
    g[k] = x
    return g, np.arange(len(g)) * interval


def _profiles(x: np.ndarray, hours: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per channel mean/scale by hour bin (24 bins where the cycle explains enough variance)."""
    c = x.shape[1]
    ok = np.isfinite(x[:, 0])
    gm = np.nanmean(x, axis=0)
    gs = np.nanstd(x, axis=0)
    mean = np.tile(gm[:, None], (1, SLOTS))
    scale = np.tile(gs[:, None], (1, SLOTS))
    if hours is None:
        return gm[:, None], gs[:, None]
    b = np.rint(hours).astype(np.int64) % SLOTS
    bm = np.full((c, SLOTS), np.nan)
    bs = np.full((c, SLOTS), np.nan)
    for s in range(SLOTS):
        rows = x[ok & (b == s)]
        if len(rows) >= 3:
            bm[:, s] = rows.mean(axis=0)
            bs[:, s] = rows.std(axis=0)
    if np.isnan(bm).any():  # an hour never seen: no usable daily profile
        return gm[:, None], gs[:, None]
    explained = np.nanmean((bm[:, b[ok]] - gm[:, None]) ** 2, axis=1) / np.maximum(gs**2, 1e-12)
    daily = explained >= DAILY_R2
    mean[daily] = bm[daily]
    scale[daily] = bs[daily]
    if not daily.any():
        return gm[:, None], gs[:, None]
    return mean, scale


def _lagged(z: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(z, np.nan)
    out[lag:] = z[:-lag]
    return out


def _fit_ar(z: np.ndarray, lags: list[int], full: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares per channel: every channel at the first ``full`` lags (at least lag 1), the
    channel itself at the others → ar (L × C × C), residual covariance, rows used."""
    c = z.shape[1]
    feats = [_lagged(z, lag) for lag in lags]
    ok = np.isfinite(z).all(axis=1)
    for f in feats:
        ok &= np.isfinite(f).all(axis=1)
    ar = np.zeros((len(lags), c, c))
    resid = np.zeros((int(ok.sum()), c))
    nfull = max(1, full)
    for ch in range(c):
        cols = [f[ok] for f in feats[:nfull]] + [f[ok][:, ch : ch + 1] for f in feats[nfull:]]
        design = np.concatenate(cols, axis=1)
        y = z[ok, ch]
        reg = 1e-7 * len(y) * np.eye(design.shape[1])  # tiny: smooth series need exact differences
        # lstsq, not solve: too few complete rows (a short or gappy series) leave the system singular
        w = np.linalg.lstsq(design.T @ design + reg, design.T @ y, rcond=None)[0]
        ar[:nfull, ch, :] = w[: nfull * c].reshape(nfull, c)
        ar[nfull:, ch, ch] = w[nfull * c :]
        resid[:, ch] = y - design @ w
    cov = resid.T @ resid / max(len(resid), 1)
    return ar, cov, float(len(resid))


def _companion_radius(ar: np.ndarray, lags: tuple[int, ...] | list[int]) -> float:
    return float(np.abs(np.linalg.eigvals(bridge.companion(ar, lags))).max())


def _acf(
    ar: np.ndarray, lags: tuple[int, ...] | list[int], cov: np.ndarray, at: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Stationary variance and lag-``at`` autocorrelation of each channel, from the impulse
    response (MA(∞) weights, truncated where a stable model has forgotten the shock), and
    whether it did forget it (False: unstable or too close to it)."""
    c = ar.shape[1]
    k = IMPULSE_STEPS
    psi = np.zeros((k + at + 1, c, c))
    psi[0] = np.eye(c)
    m = max(lags)
    stable = False
    for t in range(1, len(psi)):
        v = np.zeros((c, c))
        for j, lag in enumerate(lags):
            if t >= lag:
                v += ar[j] @ psi[t - lag]
        psi[t] = v
        if t > at + m and t % 64 == 0 and np.abs(psi[t - m : t + 1]).max() < 1e-4:
            psi = psi[: t + 1]  # the shock is forgotten: the rest adds nothing
            k = t - at
            stable = True
            break
    var = np.einsum("kij,jl,kil->i", psi[: k + 1], cov, psi[: k + 1])
    lagged = np.einsum("kij,jl,kil->i", psi[at : k + at + 1], cov, psi[: k + 1])
    return var, lagged / np.maximum(var, 1e-12), stable


def _empirical_acf(z: np.ndarray, lag: int) -> np.ndarray:
    a, b = z[lag:], z[:-lag]
    out = np.zeros(z.shape[1])
    for ch in range(z.shape[1]):
        ok = np.isfinite(a[:, ch]) & np.isfinite(b[:, ch])
        if ok.sum() > 10 and np.ptp(a[ok, ch]) > 0 and np.ptp(b[ok, ch]) > 0:  # a constant: no correlation
            out[ch] = np.corrcoef(a[ok, ch], b[ok, ch])[0, 1]
    return out


def _tune_lag(ar: np.ndarray, lags: list[int], cov: np.ndarray, j: int, target: np.ndarray) -> np.ndarray:
    """Adjust each channel's own weight at lags[j] so its autocorrelation there matches the
    data's: one-step least squares under-states the multi-day persistence of weather."""
    ar = ar.copy()
    for rnd in range(TUNE_ROUNDS):  # channels are coupled: a second round settles what the first moved
        width = 0.5 if rnd == 0 else 0.15
        for ch in range(ar.shape[1]):
            lo_w, hi_w = max(ar[j, ch, ch] - width, -0.95), min(ar[j, ch, ch] + width, 0.95)
            best = ar[j, ch, ch]
            for _ in range(7):  # bisection: the autocorrelation rises with the weight
                mid = 0.5 * (lo_w + hi_w)
                ar[j, ch, ch] = mid
                _, acf, stable = _acf(ar, lags, cov, lags[j])
                if not stable:
                    hi_w = mid
                    continue
                best = mid
                r = acf[ch]
                if abs(r - target[ch]) < 0.01:
                    break
                lo_w, hi_w = (mid, hi_w) if r < target[ch] else (lo_w, mid)
            ar[j, ch, ch] = best
    return ar


def _hourly_marginals(
    u: np.ndarray, sd: np.ndarray, hours: np.ndarray, marg: np.ndarray, probs: np.ndarray, use: np.ndarray
) -> np.ndarray:
    """Per hour bin quantile maps (C × S × Q) for the channels in ``use``, each from its own bin's
    anomalies (pooling the next bins blurs a point mass: the limit lies at another anomaly in
    each hour); the other channels, and bins with too few rows, keep the all-hours map."""
    out = np.repeat(marg[:, None, :], SLOTS, axis=1)
    b = np.rint(hours).astype(np.int64) % SLOTS
    for ch in np.flatnonzero(use).tolist():
        ok = np.isfinite(u[:, ch]) & (sd[:, ch] > 1e-9)
        for s in range(SLOTS):
            col = u[ok & (b == s), ch]
            if len(col) >= HOUR_MARG_ROWS:
                qs = np.quantile(col, probs)
                out[ch, s] = np.maximum.accumulate(qs + 1e-6 * np.arange(len(qs)))
    return out


def learn(
    q: np.ndarray,
    times: list[str] | None = None,
    *,
    full: bool = True,
    source: str = "data",
    tune: bool = True,
) -> TimeModel:
    """Fit a TimeModel to quantised training rows (and their ``time`` cells, if any). ``full``:
    cross-channel weights at every lag up to the order (else at lag 1 only: a smaller file).
    ``tune``: fit what only generation uses, the day lag to the day's autocorrelation and the
    innovations to the cross-channel correlations (most of the cost; gap filling needs neither)."""
    q = np.asarray(q, dtype=np.int64)
    secs = t0 = interval = None
    if times is not None:
        secs, t0 = parse_times(times, source)
        if np.any(np.diff(secs) < 0):
            raise DataError(f"{source}: time column is not in ascending order")
        interval = sampling_interval(secs)
    x, grid_secs = _grid_series(q, secs, interval)
    c = q.shape[1]
    clock = hours = None
    span_days = 0.0 if interval is None else (len(x) * interval) / 86400
    if t0 is not None and interval is not None:
        clock = clock_of(t0, grid_secs)
        if interval <= 7200 and span_days >= 3:
            hours = clock[:, 0]
    annual = np.zeros((c, 2))
    mean, scale = _profiles(x, hours)
    if clock is not None and span_days >= ANNUAL_SPAN_DAYS:
        # the level's annual cycle, fitted to what the hour profile leaves, then the profile again
        tm0 = TimeModel(mean, scale, np.zeros((c, 1)), (1,), np.zeros((1, c, c)), np.eye(c), interval, None)
        mu0, sd0 = tm0.profile(clock)
        rel = tm0._relative(sd0)
        ok = np.isfinite(x[:, 0])
        basis = _annual_basis(clock[ok, 1])
        for ch in range(c):
            design = basis * rel[ok, ch : ch + 1]
            resid = x[ok, ch] - mu0[ok, ch]
            w = np.linalg.lstsq(design, resid, rcond=None)[0]
            # only a cycle that explains something: a noisy fit would tie unrelated channels together
            if np.var(design @ w) >= DAILY_R2 * max(np.var(x[ok, ch]), 1e-12):
                annual[ch] = w
        mean, scale = _profiles(x - _annual_basis(clock[:, 1]) @ annual.T * rel, hours)
    tmp = TimeModel(
        mean,
        scale,
        np.zeros((c, len(Z_GRID))),
        (1,),
        np.zeros((1, c, c)),
        np.eye(c),
        interval,
        None,
        annual,
    )
    mu, sd = tmp.profile(clock, len(x))
    u = np.where(sd > 1e-9, (x - mu) / np.where(sd > 1e-9, sd, 1.0), 0.0)
    u[~np.isfinite(x)] = np.nan
    probs = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in Z_GRID])
    marg = np.zeros((q.shape[1], len(Z_GRID)))
    for ch in range(q.shape[1]):
        col = u[np.isfinite(u[:, ch]) & (sd[:, ch] > 1e-9), ch]
        qs = np.quantile(col, probs) if len(col) else Z_GRID.copy()
        # strictly ascending so that the map to normal scores is one to one
        marg[ch] = np.maximum.accumulate(qs + 1e-6 * np.arange(len(qs)))
    # The quantile map gives back the data's skew and point masses, but where it changes the
    # step-to-step correlation (isolated spikes: accelerometers) a plain linear map is kept, so
    # generated series keep the data's own autocorrelation.
    quantile_map = np.ones(c, dtype=bool)
    for ch in range(c):
        col = u[:, ch]
        lin = (np.nanmean(col) + np.nanstd(col) * Z_GRID) if np.isfinite(col).any() else Z_GRID
        zq = _interp(np.nan_to_num(col), marg[ch], Z_GRID)
        zq[~np.isfinite(col)] = np.nan
        if abs(_empirical_acf(zq[:, None], 1)[0] - _empirical_acf(col[:, None], 1)[0]) > COPULA_ACF_GAP:
            marg[ch] = np.maximum.accumulate(lin + 1e-6 * np.arange(len(lin)))
            quantile_map[ch] = False
    if hours is not None and mean.shape[1] == SLOTS:
        marg = _hourly_marginals(u, sd, hours, marg, probs, quantile_map & (np.ptp(mean, axis=1) > 0))
    tmp = TimeModel(mean, scale, marg, (1,), np.zeros((1, c, c)), np.eye(c), interval, None)
    z = tmp.to_z(np.nan_to_num(u), clock)
    z[~np.isfinite(u) | (sd <= 1e-9)] = np.nan  # night irradiance says nothing about its dynamics
    period = None
    if hours is not None and mean.shape[1] > 1 and interval is not None:
        p = 86400 / interval
        if abs(p - round(p)) < 1e-6 and round(p) <= MAX_PERIOD:
            period = round(p)
    best: tuple[float, list[int], np.ndarray, np.ndarray, np.ndarray] | None = None
    extra = sorted({TUNED_LAG, *([period] if period else [])})
    for order in range(1, MAX_ORDER + 1):
        lags = list(range(1, order + 1)) + [v for v in extra if v > order]
        nfull = order if full else 1
        ar, cov, n = _fit_ar(z, lags, nfull)
        params = c * c * nfull + c * (len(lags) - nfull)
        if n < 10 * params:
            break
        _sign, logdet = np.linalg.slogdet(cov + 1e-9 * np.eye(c))
        bic = logdet + math.log(n) * params / n  # per row: n shrinks with the lags
        if best is None or bic < best[0]:
            best = (bic, lags, ar, cov)
    if best is None:
        ar, cov, lags = np.zeros((1, c, c)), np.eye(c), [1]
    else:
        _, lags, ar, cov = best
    radius = _companion_radius(ar, lags)
    if radius >= 0.999:  # keep generation stationary
        ar = ar * (0.995 / radius)
    if tune and TUNED_LAG in lags and max(lags) * c <= 600:
        ar = _tune_lag(ar, lags, cov, lags.index(TUNED_LAG), _empirical_acf(z, TUNED_LAG))
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(c))
    start = None
    if t0 is not None:
        start = t0.isoformat()
    known = np.where(np.isfinite(x) & (sd <= 1e-9), 0.0, z)  # what gap filling sees: night irradiance 0
    fill_ar = learn_fill(z, known, lags, nfull_of(lags, full))
    tm = TimeModel(mean, scale, marg, tuple(lags), ar, chol, interval, start, annual, fill=fill_ar)
    tm = replace(tm, zscale=_stationary_spread(tm, cov))
    return _match_correlations(tm, cov, x, clock) if tune else tm


def _stationary_spread(tm: TimeModel, cov: np.ndarray) -> np.ndarray:
    """A fitted AR rarely has exactly unit stationary spread (near-unit roots, the stability
    shrink, the tuned lag): the spread, divided out when generating. (A model too slow to forget
    a shock for the sum is measured on a long fixed-seed run instead.)"""
    c = tm.channels
    var, _, stable = _acf(tm.ar, tm.lags, cov, 1) if max(tm.lags) * c <= 600 else (None, None, False)
    zs = np.sqrt(var) if stable else simulate_z(tm, 40_000, np.random.default_rng(0)).std(axis=0)
    return np.maximum(zs, 1e-6)


def _values(tm: TimeModel, z: np.ndarray, clock: np.ndarray | None) -> np.ndarray:
    """Generated scores → values (unrounded), as ``generate`` maps them."""
    assert tm.zscale is not None
    z = np.clip(z / tm.zscale, Z_GRID[0], Z_GRID[-1])
    mu, sd = tm.profile(clock, len(z))
    return mu + sd * tm.from_z(z, clock)


def _match_correlations(tm: TimeModel, cov: np.ndarray, x: np.ndarray, clock: np.ndarray | None) -> TimeModel:
    """Choose the innovations' cross-channel correlations so that generated values have the
    training data's correlation matrix (the NORTA principle): the residual correlation of the
    scores is not that of the values once the quantile maps, the hourly spreads and the dynamics
    have acted on it. Secant rounds per pair (the first a plain fixed-point step) on fixed-seed
    runs at the training rows' own clock, CROSS_ROUNDS at most, until every pair is within
    CROSS_TOL; the best round is kept."""
    c = tm.channels
    ok = np.isfinite(x).all(axis=1)
    if c < 2 or ok.sum() < 10 * c:
        return tm
    varying = x[ok].std(axis=0) > 0  # a constant channel (a stuck sensor) has no correlation to match
    if varying.sum() < 2:
        return tm
    with np.errstate(invalid="ignore", divide="ignore"):
        target = np.nan_to_num(np.corrcoef(x[ok].T))
    d = np.sqrt(np.maximum(np.diag(cov), 1e-12))
    r = cov / np.outer(d, d)
    reps = max(1, min(4, CROSS_ROWS // len(x)))
    best: tuple[float, TimeModel] | None = None
    off = ~np.eye(c, dtype=bool) & np.outer(varying, varying)
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for rnd in range(CROSS_ROUNDS):
        cov_r = r * np.outer(d, d)
        trial = tm
        if rnd:  # round 0: the fitted innovations as they are
            trial = replace(tm, gen_chol=np.linalg.cholesky(cov_r + 1e-9 * np.eye(c)))
            trial = replace(trial, zscale=_stationary_spread(trial, cov_r))
        rng = np.random.default_rng(0)
        gen = np.concatenate([_values(trial, simulate_z(trial, len(x), rng), clock)[ok] for _ in range(reps)])
        with np.errstate(invalid="ignore", divide="ignore"):
            got = np.nan_to_num(np.corrcoef(gen.T))
        diff = np.where(off, target - got, 0.0)
        worst = float(np.abs(diff).max())
        log.debug("cross-channel correlations, round %d: worst pair off by %.3f", rnd, worst)
        if best is None or worst < best[0]:
            best = (worst, trial)
        if worst <= CROSS_TOL:
            break
        slope = np.ones((c, c))
        if prev is not None:  # how far each pair's value correlation moved per unit of innovation one
            dr, dg = r - prev[0], got - prev[1]
            slope = np.where(np.abs(dr) > 1e-4, dg / np.where(np.abs(dr) > 1e-4, dr, 1.0), 1.0)
            slope = np.clip(slope, 0.25, 1.5)
        prev = (r, got)
        w, v = np.linalg.eigh(r + diff / slope)
        r = (v * np.maximum(w, 1e-3)) @ v.T
        r = r / np.sqrt(np.outer(np.diag(r), np.diag(r)))
    assert best is not None
    return best[1]


def nfull_of(lags: list[int], full: bool) -> int:
    """How many leading lags of a generation AR carry cross-channel weights."""
    order = next((i for i, v in enumerate(lags) if v != i + 1), len(lags))
    return max(1, min(order, MAX_ORDER)) if full else 1


def fit_fill(z: np.ndarray, lags: list[int], nfull: int) -> tuple[np.ndarray, np.ndarray] | None:
    """AR weights and Cholesky factor fitted to z, None when too few complete rows: each channel's
    regression needs 10 rows per weight."""
    c = z.shape[1]
    ar, cov, n = _fit_ar(z, lags, nfull)
    if n < 10 * (c * nfull + len(lags) - nfull):
        return None
    return ar, np.linalg.cholesky(cov + 1e-9 * np.eye(c))


def _gap_errors(
    ar: np.ndarray, lags: list[int], chol: np.ndarray, z: np.ndarray, both: np.ndarray
) -> np.ndarray:
    """Sum and count (2 × C) of the bridge's absolute errors on gaps of FILL_GAPS rows cut out of z."""
    rng = np.random.default_rng(0)
    x = z.copy()
    gaps = []
    pos = 2 * FILL_GAPS[1]
    while pos + 3 * FILL_GAPS[1] < len(z):
        length = int(rng.integers(FILL_GAPS[0], FILL_GAPS[1] + 1))
        gaps.append((pos, length))
        x[pos : pos + length] = np.nan
        pos += length + 3 * FILL_GAPS[1] + int(rng.integers(0, FILL_GAPS[1]))
    out = np.zeros((2, z.shape[1]))
    if not gaps:
        return out
    f = bridge.fill_scores(ar, tuple(lags), chol, x, both=both)
    rows = np.concatenate([np.arange(p, p + n) for p, n in gaps])
    err = np.abs(f[rows] - z[rows])
    ok = np.isfinite(err)
    return np.stack([np.where(ok, err, 0.0).sum(axis=0), ok.sum(axis=0)])


def learn_fill(z: np.ndarray, known: np.ndarray, lags: list[int], nfull: int) -> FillAR | None:
    """An AR for gap filling with longer own-channel lags (FILL_LAGS), when it beats the generation
    AR's bridge by FILL_GAIN in two-fold cross-validation on the training rows (chunks of
    FILL_CV_CHUNK rows, alternately in each fold, so both folds see every regime of a recording:
    fit on one fold, fill gaps of FILL_GAPS rows in each chunk of the other); None: gap filling
    uses the generation AR. The error is the mean over channels of the mean absolute score error.

    ``z``: the scores the AR is fitted to (NaN: not used); ``known``: the scores gap filling sees.
    A generation AR whose covariance is too large to compute (a day lag of minute data) is not a
    candidate: the best fill AR is kept."""
    c = z.shape[1]
    chunk = np.arange(len(z)) // FILL_CV_CHUNK
    specs: list[tuple[list[int], int] | None] = [None] if bridge.usable(lags, c) else []
    specs += [(list(range(1, p + 1)), min(nfull, p)) for p in FILL_LAGS if bridge.usable([p], c)]
    best: tuple[float, tuple[list[int], int] | None] | None = None
    for spec in specs:
        spec_lags, spec_full = (lags, nfull) if spec is None else spec
        tot = np.zeros((2, c))
        for fold in (0, 1):
            zf = np.where((chunk % 2 == fold)[:, None], z, np.nan)
            fitted = fit_fill(zf, spec_lags, spec_full)
            if fitted is None:
                tot[1] = 0
                break
            both = bridge.covariances(fitted[0], tuple(spec_lags), fitted[1], cache=False)
            for k in range(1 - fold, int(chunk[-1]) + 1, 2):
                tot += _gap_errors(fitted[0], spec_lags, fitted[1], known[chunk == k], both)
        if np.any(tot[1] < 10):
            continue
        score = float(np.mean(tot[0] / tot[1])) / (1.0 if spec is None else FILL_GAIN)
        log.debug("fill AR %s: cross-validated error %.4f", len(spec_lags) if spec else "generation", score)
        if best is None or score < best[0]:
            best = (score, spec)
    if best is None or best[1] is None:
        return None
    spec_lags, spec_full = best[1]
    fitted = fit_fill(z, spec_lags, spec_full)
    if fitted is None:
        return None
    return FillAR(tuple(spec_lags), spec_full, bridge.stabilise(fitted[0], spec_lags), fitted[1])


# ---------------------------------------------------------------------------------------- generation
def simulate_z(tm: TimeModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """n × C normal scores from the AR model (after a burn-in that forgets the zero start)."""
    c = tm.channels
    m = max(tm.lags)
    burn = 3 * m + 64
    eps = rng.standard_normal((n + burn, c)) @ (tm.chol if tm.gen_chol is None else tm.gen_chol).T
    z = np.zeros((n + burn + m, c))
    terms = [(lag, tm.ar[j]) for j, lag in enumerate(tm.lags)]
    for t in range(m, n + burn + m):
        v = eps[t - m].copy()
        for lag, w in terms:
            v += w @ z[t - lag]
        z[t] = v
    return z[m + burn :]


def generate(
    model: Model, n: int, rng: np.random.Generator, start: datetime | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """n × C quantised samples and their ISO 8601 times (None when the interval is unknown)."""
    tm = time_model(model)
    if tm is None:
        raise WeightsError("model has no time structure (older weight file)")
    p = model.params
    t0 = start
    if t0 is None and tm.start is not None:
        t0 = datetime.fromisoformat(tm.start)
    if start is not None and tm.interval is None:
        raise DataError("the model was trained without a time column: no sampling interval to stamp rows")
    z = simulate_z(tm, n, rng)
    if tm.zscale is not None:
        z = z / tm.zscale
    z = np.clip(z, Z_GRID[0], Z_GRID[-1])  # no extrapolation past the data's extreme quantiles
    clock = None
    if t0 is not None and tm.interval is not None:
        clock = clock_of(t0, np.arange(n) * tm.interval)
    mu, sd = tm.profile(clock, n)
    x = np.rint(mu + sd * tm.from_z(z, clock))
    if tm.censored is not None:  # fold overshoots back where the limit is not a saturation
        x = np.where((x < p.lo) & (tm.censored[:, 0] == 0), 2 * p.lo - x, x)
        x = np.where((x > p.hi) & (tm.censored[:, 1] == 0), 2 * p.hi - x, x)
    x = model.snap(np.clip(x, p.lo, p.hi).astype(np.int64))  # a lattice sensor's values only
    times = format_times(t0, tm.interval, n) if t0 is not None and tm.interval is not None else None
    return x, times


# ---------------------------------------------------------------------------------------- training hook
def censoring(model: Model, q: np.ndarray) -> np.ndarray:
    """Per channel and side (low, high): whether at least CENSORED_SHARE of the training samples
    sit at the range limit — a saturating sensor (humidity 100 %, irradiance 0 at night)."""
    q = np.asarray(q)
    p = model.params
    return np.stack([(q <= p.lo).mean(axis=0), (q >= p.hi).mean(axis=0)], axis=1) >= CENSORED_SHARE


def attach(
    model: Model,
    q: np.ndarray,
    times: list[str] | None,
    max_bytes: int,
    cache: dict[bool, Any] | None = None,
) -> bytes | None:
    """Learn the time structure into ``model.meta['generation']``: the richest form (cross-channel
    weights at every lag, then at lag 1 only) and finest precision whose weight file still fits
    ``max_bytes`` (the trainer passes the bitstream file's size plus the time structure's own
    budget); returns the file, or None (metadata left as it was). ``cache`` keeps what was
    learned for the next call on the same data."""
    from gateway.codec import weights

    source = str(model.meta.get("training", {}).get("source", "data"))
    old = model.meta.get("generation")
    for full in (True, False):
        cache = {} if cache is None else cache
        if full not in cache:
            try:
                cache[full] = learn(q, times, full=full, source=source)
            except DataError as exc:  # a defective time column costs the daily cycle, not the model
                log.warning("%s: time structure learned without the time column: %s", source, exc.message)
                cache[full] = learn(q, None, full=full, source=source)
        tm = replace(cache[full], censored=censoring(model, q))
        for digits in (4, 3):
            model.meta["generation"] = tm.to_meta(digits)
            data = weights.to_bytes(model)
            if len(data) <= max_bytes:
                return data
        if len(tm.lags) == 1 or tm.ar.shape[0] == 1:
            break  # nothing smaller to try
    model.meta["generation"] = old
    weights.to_bytes(model)  # metadata (sha256) back in step with the file the caller keeps
    return None
