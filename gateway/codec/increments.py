"""Gap filling on a channel's increments: for readings that wander like a random walk.

A sea temperature read every 30 minutes, a sensor current: the readings drift with no level to
return to, and their changes are close to white noise. The score AR of :mod:`gateway.codec.bridge`
is stationary, so across a gap it pulls towards the channel's typical value and bends with the
quantile map; linear interpolation, the conditional mean of a random walk pinned at both ends,
then beats it. Here the changes themselves are the stationary Gaussian process: the missing
changes of a gap are estimated by their conditional mean given the known changes within
``len(acov) - 1`` rows on either side and the one thing the gap does tell, that its changes add up
to the step from the last known reading to the next. With white changes this is linear
interpolation; with correlated ones (a trend that carries on for a few rows, a tide) it bends
the way the changes around the gap point.

``acov[c, h]``: the autocovariance of channel c's changes at lag h, learned by :func:`learn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.codec.errors import WeightsError

MAX_LAG = 32  # longest lag of the changes' autocovariance: context rows on each side of a gap
RIDGE = 1e-6  # relative jitter on the conditioning matrix's diagonal (keeps it invertible)


def learn(q: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Autocovariance (C × max_lag+1) of each channel's changes between consecutive readings."""
    d = np.diff(np.asarray(q, dtype=np.float64), axis=0)
    d = d - d.mean(axis=0)
    n = len(d)
    k = min(max_lag, max(n - 2, 0))
    out = np.zeros((d.shape[1], max_lag + 1))
    for h in range(k + 1):
        out[:, h] = (d[: n - h] * d[h:]).sum(axis=0) / max(n, 1)
    return out


def window(acov: np.ndarray) -> np.ndarray:
    """The autocovariance under a Bartlett lag window: the product of the sample autocovariance
    (positive semi-definite, being one) and a triangle (so is it) stays a covariance when cut off
    at its last lag, so every conditioning matrix can be solved; a cut-off one need not be."""
    k = len(acov) - 1
    return acov * (1.0 - np.arange(k + 1) / (k + 1))


def _runs(miss: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True, end exclusive."""
    edges = np.diff(np.concatenate([[0], miss.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def fill_channel(x: np.ndarray, acov: np.ndarray) -> np.ndarray:
    """One channel (T, NaN where missing) → the same with every gap filled."""
    x = np.asarray(x, dtype=np.float64).copy()
    miss = np.isnan(x)
    if not miss.any() or miss.all():
        return x
    acov = window(np.asarray(acov, dtype=np.float64))
    k = len(acov) - 1
    d = np.diff(x)  # d[j] = x[j + 1] − x[j]; NaN where a reading is missing
    t = len(x)
    for a, b in _runs(miss):
        lo, hi = a - 1, b  # last known row before, first known row after (may be outside)
        if lo < 0 and hi >= t:
            continue
        if lo < 0 or hi >= t:  # one-sided: the known changes forecast the missing ones
            unk = np.arange(lo + 1, hi) if lo < 0 else np.arange(lo, hi - 1)
            obs = np.arange(hi, min(hi + k, t - 1)) if lo < 0 else np.arange(max(lo - k, 0), lo)
            total = None
        else:
            unk = np.arange(lo, hi)  # the hi − lo changes spanning the gap
            obs = np.concatenate([np.arange(max(lo - k, 0), lo), np.arange(hi, min(hi + k, t - 1))])
            total = x[hi] - x[lo]
        obs = obs[np.isfinite(d[obs])] if len(obs) else obs
        every = np.concatenate([obs, unk])
        lag = np.abs(every[:, None] - every[None, :])
        cov = np.where(lag <= k, acov[np.minimum(lag, k)], 0.0)
        no = len(obs)
        # observations: the known changes, and (two-sided) the sum of the unknown ones
        h = np.zeros((no + (total is not None), len(every)))
        h[np.arange(no), np.arange(no)] = 1.0
        y = d[obs] if no else np.zeros(0)
        if total is not None:
            h[no, no:] = 1.0
            y = np.concatenate([y, [total]])
        if len(y):
            s = h @ cov @ h.T
            s += RIDGE * max(acov[0], 1e-12) * np.eye(len(y))
            est = (cov @ h.T @ np.linalg.solve(s, y))[no:]
        else:
            est = np.zeros(len(unk))
        if lo < 0:  # backwards from the first known reading
            x[a:b] = x[hi] - np.cumsum(est[::-1])[::-1]
        else:
            x[a:b] = x[lo] + np.cumsum(est)[: b - a]
    return x


@dataclass(frozen=True)
class Increments:
    """The channels gap filling fills on their increments, each one's autocovariance of changes
    (its own number of lags) and the weight of this fill against the score AR's (1: this alone).
    Lags and weight are what cross-validation chose: a blend of the two fills beats either alone
    where neither method is clearly right for a channel."""

    channels: tuple[int, ...]
    acov: tuple[np.ndarray, ...]
    weight: tuple[float, ...] | None = None  # None: 1 for every channel (files before the weight)

    def weights(self) -> tuple[float, ...]:
        return self.weight if self.weight is not None else (1.0,) * len(self.channels)

    def fill(self, x: np.ndarray) -> np.ndarray:
        """T × C with NaN → a copy whose listed channels' gaps are filled on their increments."""
        out = np.asarray(x, dtype=np.float64).copy()
        for ch, ac in zip(self.channels, self.acov, strict=True):
            out[:, ch] = fill_channel(out[:, ch], ac)
        return out

    def to_meta(self, digits: int = 4) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "acov": [[float(f"{v:.{digits}g}") for v in ac.tolist()] for ac in self.acov],
            **({} if self.weight is None else {"weight": [float(w) for w in self.weight]}),
        }


def from_meta(meta: Any, channels: int) -> Increments:
    """Check the weight file's ``increments`` block; one-line WeightsError if it is malformed."""
    bad = "generation metadata: increments must list distinct channels, a positive variance " \
        f"and at most {MAX_LAG} lags of autocovariance for each, and weights in (0, 1]"
    if not isinstance(meta, dict) or not {"channels", "acov"} <= set(meta) <= {"channels", "acov", "weight"}:
        raise WeightsError(bad)
    chans, acov = meta["channels"], meta["acov"]
    if (
        not isinstance(chans, list)
        or not isinstance(acov, list)
        or len(chans) != len(acov)
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < channels for c in chans)
        or len(set(chans)) != len(chans)
    ):
        raise WeightsError(bad)
    weight = meta.get("weight")
    if weight is not None and (
        not isinstance(weight, list)
        or len(weight) != len(chans)
        or not all(isinstance(w, int | float) and not isinstance(w, bool) and 0 < w <= 1 for w in weight)
    ):
        raise WeightsError(bad)
    rows = []
    for row in acov:
        if not isinstance(row, list) or not 1 <= len(row) <= MAX_LAG + 1:
            raise WeightsError(bad)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row):
            raise WeightsError(bad)
        a = np.asarray(row, dtype=np.float64)
        if not np.all(np.isfinite(a)) or a[0] <= 0 or np.any(np.abs(a) > a[0] * (1 + 1e-6)):
            raise WeightsError(bad)
        rows.append(a)
    return Increments(tuple(chans), tuple(rows), None if weight is None else tuple(float(w) for w in weight))
