"""Conditional mean of missing normal scores under a vector AR model (the gap filler's core).

The scores ``z`` of :mod:`gateway.codec.generate` follow a stationary vector AR process, so any
set of cells is jointly Gaussian with covariances read off the process's autocovariance
``Γ(h) = E[z_{t+h} z_tᵀ]``. The missing cells of a gap are estimated by their conditional mean
given the known cells within ``m`` rows (the longest lag) on either side and any known cells of
the gap's own rows (a channel still reporting while another is lost): kriging with the model's
own covariance. An AR(m) process is m-Markov, so with full rows around the gap this is the exact
conditional mean given the whole series; with shorter context (the service's one frame on each
side, the first rows of a file) it is still exact for what is known, never a guess of zeros.

``FillAR`` is the optional AR model learned for filling only (long own-channel lags: a gait's
cycle spans more rows than generation's short lags); without it the generation AR is used.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.codec.errors import WeightsError

MAX_RUN = 384  # missing rows solved in one system; longer runs go in consecutive chunks
MAX_STATE = 600  # companion-form size (longest lag × channels) the covariance is computed for
DOUBLINGS = 40  # cap on the doubling steps of the stationary covariance (2⁴⁰ steps of the process)
FILL_MAX_LAG = 64  # longest lag a stored FillAR may have
COV_CACHE_SIZE = 8  # models whose covariances are kept (one per installed model in use)
_COV_CACHE: dict[bytes, np.ndarray] = {}


@dataclass(frozen=True)
class FillAR:
    """A vector AR model of the scores for gap filling: every channel at lags 1..``cross``, each
    channel alone at lags cross+1..len(lags); ``chol``: lower Cholesky factor of the innovations."""

    lags: tuple[int, ...]
    cross: int
    ar: np.ndarray  # L × C × C (zero off the diagonal past ``cross``)
    chol: np.ndarray

    def to_meta(self, digits: int = 4) -> dict[str, Any]:
        def r(a: np.ndarray) -> Any:
            return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(a).tolist()

        c = self.chol.shape[0]
        own = (
            np.stack([np.diagonal(a) for a in self.ar[self.cross :]], axis=1)
            if len(self.lags) > self.cross
            else np.zeros((c, 0))
        )
        return {
            "lags": list(self.lags),
            "cross": self.cross,
            "ar": r(self.ar[: self.cross]),
            "own": r(own) if own.size else [[] for _ in range(c)],
            "chol": r(self.chol),
        }


def fill_ar_from_meta(meta: Any, channels: int) -> FillAR:
    """Build a FillAR from the ``fill`` object of generation metadata; one-line WeightsError if bad."""
    c = channels
    if not isinstance(meta, dict):
        raise WeightsError("generation metadata: fill must be an object")
    lags = meta.get("lags")
    if (
        not isinstance(lags, list)
        or not lags
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in lags)
        or lags != list(range(1, len(lags) + 1))
        or len(lags) > FILL_MAX_LAG
    ):
        raise WeightsError(f"generation metadata: fill lags must be 1, 2, … up to at most {FILL_MAX_LAG}")
    cross = meta.get("cross")
    if isinstance(cross, bool) or not isinstance(cross, int) or not 1 <= cross <= len(lags):
        raise WeightsError("generation metadata: fill cross must be an integer in 1..number of lags")
    ar = _floats(meta, "ar", (cross, c, c))
    own = _floats(meta, "own", (c, len(lags) - cross))
    chol = _floats(meta, "chol", (c, c))
    if np.any(np.triu(chol, 1) != 0) or np.any(np.diag(chol) < 0):
        raise WeightsError("generation metadata: fill chol must be lower triangular with a diagonal ≥ 0")
    full = np.zeros((len(lags), c, c))
    full[:cross] = ar
    for j in range(len(lags) - cross):
        full[cross + j] = np.diag(own[:, j])
    if np.abs(full).max(initial=0) > 10:
        raise WeightsError("generation metadata: fill AR weight out of range")
    return FillAR(tuple(lags), cross, full, chol)


def meta_array(
    meta: dict[str, Any], key: str, shape: tuple[int, ...], label: str | None = None
) -> np.ndarray:
    """A finite float array of exactly ``shape`` from a weight file's generation metadata, or the
    WeightsError that names it (``label``, default the key): install refuses a malformed block."""
    name = label or key
    try:
        a = np.asarray(meta[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"generation metadata: {name} missing or not numeric") from None
    if a.size == 0 and math.prod(shape) == 0:
        a = a.reshape(shape)
    if a.shape != shape:
        raise WeightsError(f"generation metadata: {name} has shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise WeightsError(f"generation metadata: {name} is not finite")
    return a


def _floats(meta: dict[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    return meta_array(meta, key, shape, f"fill {key}")


# ---------------------------------------------------------------------------------------- covariance
def companion(ar: np.ndarray, lags: tuple[int, ...] | list[int]) -> np.ndarray:
    c = ar.shape[1]
    m = max(lags)
    comp = np.zeros((m * c, m * c))
    for j, lag in enumerate(lags):
        comp[:c, (lag - 1) * c : lag * c] += ar[j]
    comp[c:, :-c] = np.eye((m - 1) * c)
    return comp


def stabilise(ar: np.ndarray, lags: tuple[int, ...] | list[int], radius: float = 0.995) -> np.ndarray:
    """Weights whose companion roots all lie within ``radius``: the weights at lag k scaled by
    ρᵏ move every root λ to ρ·λ (scaling all weights alike need not bring a root inside)."""
    comp = companion(ar, lags)
    top = float(np.abs(np.linalg.eigvals(comp)).max()) if comp.size else 0.0
    if top < 0.999:
        return ar
    rho = radius / top
    return ar * (rho ** np.asarray(lags, dtype=np.float64))[:, None, None]


def usable(lags: tuple[int, ...] | list[int], channels: int) -> bool:
    """Whether the covariance of a model with these lags is small enough to compute."""
    return max(lags) * channels <= MAX_STATE


def autocov(ar: np.ndarray, lags: tuple[int, ...], cov: np.ndarray, hmax: int) -> np.ndarray:
    """Γ(0..hmax) (hmax+1 × C × C) of the stationary AR process: the companion form's stationary
    covariance by doubling (S ← S + A S Aᵀ, A ← A²), then Γ(h) = Σ_j A_j Γ(h − lag_j) past it.
    A model at or past a unit root is first made stationary (see ``stabilise``)."""
    c = ar.shape[1]
    m = max(lags)
    ar = stabilise(ar, lags)
    comp = companion(ar, lags)
    s = np.zeros_like(comp)
    s[:c, :c] = cov
    a = comp
    for _ in range(DOUBLINGS):
        s = s + a @ s @ a.T
        a = a @ a
        if np.abs(a).max() < 1e-12:
            break
    g = np.zeros((max(hmax, m - 1) + 1, c, c))
    for h in range(m):
        g[h] = s[:c, h * c : (h + 1) * c]  # E[z_t z_{t-h}ᵀ]
    for h in range(m, len(g)):
        for j, lag in enumerate(lags):
            g[h] += ar[j] @ g[h - lag]
    return g[: hmax + 1]


def covariances(ar: np.ndarray, lags: tuple[int, ...], chol: np.ndarray, cache: bool = True) -> np.ndarray:
    """Γ(-H..H) for H = MAX_RUN + 2·longest lag (index h + H; Γ(-h) = Γ(h)ᵀ), cached per model:
    the service fills one gap at a time with the same model."""
    key = hashlib.sha1(b"".join([ar.tobytes(), repr(tuple(lags)).encode(), chol.tobytes()])).digest()
    both = _COV_CACHE.get(key)
    if both is None:
        g = autocov(ar, lags, chol @ chol.T, MAX_RUN + 2 * max(lags))
        both = np.concatenate([np.transpose(g[:0:-1], (0, 2, 1)), g])
        if not cache:
            return both
        if len(_COV_CACHE) >= COV_CACHE_SIZE:
            _COV_CACHE.pop(next(iter(_COV_CACHE)))
        _COV_CACHE[key] = both
    return both


# ---------------------------------------------------------------------------------------- kriging
def _clusters(bad: np.ndarray, context: int) -> list[tuple[int, int]]:
    """Missing rows (ascending) → [start, end) spans: rows closer than ``context`` known rows
    share their context and are solved together; no span longer than MAX_RUN."""
    spans: list[tuple[int, int]] = []
    start = prev = int(bad[0])
    for r in bad[1:].tolist():
        if r - prev > context or r + 1 - start > MAX_RUN:
            spans.append((start, prev + 1))
            start = r
        prev = r
    spans.append((start, prev + 1))
    return spans


def fill_scores(
    ar: np.ndarray,
    lags: tuple[int, ...],
    chol: np.ndarray,
    z: np.ndarray,
    cache: bool = True,
    both: np.ndarray | None = None,
) -> np.ndarray:
    """Every NaN of a T × C score series replaced by its conditional mean; returns a new array.
    ``cache``: keep the model's covariances for the next call (off for training's trial models);
    ``both``: the covariances already computed (``covariances``)."""
    z = np.array(z, dtype=np.float64)
    bad = np.flatnonzero(np.isnan(z).any(axis=1))
    if len(bad) == 0:
        return z
    m = max(lags)
    if both is None:
        both = covariances(ar, lags, chol, cache)
    hh = len(both) // 2
    known = ~np.isnan(z)
    for a, b in _clusters(bad, m):
        lo, hi = max(0, a - m), min(len(z), b + m)
        ro, co = np.nonzero(known[lo:hi])  # the gap's own known cells, and its context
        ru, cu = np.nonzero(~known[a:b])
        ro, ru = ro + lo, ru + a
        if len(ro) == 0:
            z[ru, cu] = 0.0  # nothing known nearby: the stationary mean
            continue
        s_oo = both[ro[:, None] - ro[None, :] + hh, co[:, None], co[None, :]]
        s_uo = both[ru[:, None] - ro[None, :] + hh, cu[:, None], co[None, :]]
        jitter = 1e-9 * max(float(np.trace(s_oo)) / len(ro), 1e-12)
        w = np.linalg.solve(s_oo + jitter * np.eye(len(ro)), z[ro, co])
        z[ru, cu] = s_uo @ w
    return z
