"""The gap bridge (gateway.codec.bridge): exact covariances, exact conditional means, the fill AR
learned at training, and its round trip through (and refusal by) the weight file."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from gateway.codec import ModelStore, bridge, fill, load_weights, save_weights
from gateway.codec import generate as gen
from gateway.codec.errors import WeightsError

from .test_generate import real_model, split  # noqa: F401  (module fixtures: held-out Greensboro)


def _simulate(ar: np.ndarray, lags: list[int], n: int, seed: int) -> np.ndarray:
    c = ar.shape[1]
    rng = np.random.default_rng(seed)
    m = max(lags)
    z = np.zeros((n + 500, c))
    e = rng.standard_normal((n + 500, c))
    for t in range(m, len(z)):
        z[t] = e[t] + sum(ar[j] @ z[t - lag] for j, lag in enumerate(lags))
    return z[500:]


def test_autocovariance_of_an_ar1_is_the_closed_form():
    phi = 0.8
    g = bridge.autocov(np.array([[[phi]]]), (1,), np.array([[1.0]]), 5)
    want = phi ** np.arange(6) / (1 - phi**2)
    assert np.allclose(g[:, 0, 0], want, rtol=1e-9)


def test_a_model_past_a_unit_root_is_made_stationary_not_left_to_explode():
    ar = np.array([[[0.6]], [[0.5]]])  # roots outside the unit circle: no stationary covariance
    fixed = bridge.stabilise(ar, (1, 2))
    assert np.abs(np.linalg.eigvals(bridge.companion(fixed, (1, 2)))).max() == pytest.approx(0.995)
    g = bridge.autocov(ar, (1, 2), np.eye(1), 10)
    assert np.all(np.isfinite(g)) and g[0, 0, 0] > 0


def test_kriging_with_lag_context_equals_conditioning_on_the_whole_series():
    # a 2-channel AR(2) with cross-channel weights: given m = 2 full rows on each side, the
    # conditional mean is the one given every known sample (the process is 2-Markov)
    ar = np.array([[[0.9, 0.2], [-0.1, 0.7]], [[-0.3, 0.0], [0.05, -0.2]]])
    lags = (1, 2)
    chol = np.array([[1.0, 0.0], [0.4, 0.8]])
    z = _simulate(ar, list(lags), 60, 1)
    x = z.copy()
    x[20:28] = np.nan
    x[40:43, 1] = np.nan  # one channel lost, the other still reporting
    got = bridge.fill_scores(ar, lags, chol, x, cache=False)
    g = bridge.autocov(ar, lags, chol @ chol.T, 60)
    idx = [(t, ch) for t in range(60) for ch in range(2)]
    full = np.empty((120, 120))
    for i, (t, a) in enumerate(idx):
        for j, (s, b) in enumerate(idx):
            full[i, j] = g[t - s][a, b] if t >= s else g[s - t][b, a]
    miss = np.isnan(x).ravel()
    want = full[np.ix_(miss, ~miss)] @ np.linalg.solve(full[np.ix_(~miss, ~miss)], x.ravel()[~miss])
    assert np.allclose(got.ravel()[miss], want, atol=1e-6)
    assert np.array_equal(got[~np.isnan(x)], x[~np.isnan(x)])


def test_bridge_beats_linear_interpolation_on_an_oscillating_ar_series():
    r, period = 0.97, 12.0  # AR(2) with complex roots: a noisy oscillation of ~12 rows
    ar = np.array([[[2 * r * np.cos(2 * np.pi / period)]], [[-(r**2)]]])
    z = _simulate(ar, [1, 2], 4000, 2)
    x = z.copy()
    rng = np.random.default_rng(3)
    gaps = []
    for pos in range(40, 3900, 60):
        length = int(rng.integers(6, 17))
        gaps.append((pos, length))
        x[pos : pos + length] = np.nan
    got = bridge.fill_scores(ar, (1, 2), np.eye(1), x, cache=False)
    t = np.arange(len(x))
    ok = ~np.isnan(x[:, 0])
    lin = np.interp(t, t[ok], x[ok, 0])
    rows = np.concatenate([np.arange(p, p + n) for p, n in gaps])
    err_bridge = np.abs(got[rows, 0] - z[rows, 0]).mean()
    err_lin = np.abs(lin[rows] - z[rows, 0]).mean()
    assert err_bridge <= 0.8 * err_lin, (err_bridge, err_lin)


def _seasonal(n: int) -> np.ndarray:
    """One channel that repeats itself 30 rows later: lags 1..8 and 24 cannot see it, 32 lags can."""
    ar = np.zeros((30, 1, 1))
    ar[0, 0, 0], ar[29, 0, 0] = 0.3, 0.65
    return _simulate(ar, list(range(1, 31)), n, 4)


def test_training_keeps_a_long_fill_ar_only_where_it_fills_better():
    z = _seasonal(6000)
    fa = gen.learn_fill(z, z, [1, 2, 24], 2)
    assert fa is not None and fa.lags == tuple(range(1, 33)) and fa.cross == 2
    assert fa.ar[29, 0, 0] == pytest.approx(0.65, abs=0.05)  # the season, recovered
    ar1 = _simulate(np.array([[[0.9]]]), [1], 6000, 5)
    assert gen.learn_fill(ar1, ar1, [1], 1) is None  # nothing to gain: the file stays as small


def _with_fill(model, fa):
    out = copy.deepcopy(model)
    meta = json.loads(json.dumps(out.meta["generation"]))
    meta["fill"] = fa.to_meta()
    out.meta["generation"] = meta
    return out


def _fill_ar(c: int) -> bridge.FillAR:
    rng = np.random.default_rng(6)
    ar = np.zeros((32, c, c))
    ar[:2] = 0.1 * rng.standard_normal((2, c, c))
    for j in range(2, 32):
        ar[j] = np.diag(0.02 * rng.standard_normal(c))
    ar[0] += 0.8 * np.eye(c)
    return bridge.FillAR(tuple(range(1, 33)), 2, ar, np.linalg.cholesky(np.eye(c) + 0.1))


def test_fill_ar_survives_the_weight_file_and_fill_uses_it(real_model, split, tmp_path):  # noqa: F811
    fa = _fill_ar(5)
    model = _with_fill(real_model, fa)
    path = tmp_path / "m.npz"
    save_weights(model, path)
    back = gen.time_model(load_weights(path)).fill
    assert back is not None and back.lags == fa.lags and back.cross == fa.cross
    assert np.allclose(back.ar, fa.ar, rtol=1e-3, atol=1e-6) and np.allclose(back.chol, fa.chol, rtol=1e-3)
    q, _, _, te, _ = split
    x = q[te[:200]].astype(float)
    x[50:62] = np.nan
    # the CLI's and the service's path (fill_series) bridges with the fill AR, not the generation one
    plain, _ = fill.fill_series(real_model, x)
    with_fill, _ = fill.fill_series(load_weights(path), x)
    assert not np.array_equal(plain[50:62], with_fill[50:62])
    assert np.array_equal(with_fill[~np.isnan(x)], q[te[:200]][~np.isnan(x)])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.update(lags=[1, 2, 4]), "fill lags must be 1, 2"),
        (lambda f: f.update(lags=list(range(1, 70))), "fill lags must be 1, 2"),
        (lambda f: f.update(cross=0), "fill cross must be an integer"),
        (lambda f: f.update(cross=True), "fill cross must be an integer"),
        (lambda f: f.update(own=f["own"][:3]), "fill own has shape"),
        (lambda f: f.update(ar="x"), "fill ar missing or not numeric"),
        (lambda f: f["chol"][0].__setitem__(1, 0.5), "fill chol must be lower triangular"),
        (lambda f: f["own"][0].__setitem__(0, 99.0), "fill AR weight out of range"),
        (lambda f: f.pop("chol"), "fill chol missing"),
    ],
)
def test_malformed_fill_ar_is_refused_at_install(real_model, tmp_path, change, message):  # noqa: F811
    model = _with_fill(real_model, _fill_ar(5))
    change(model.meta["generation"]["fill"])
    with pytest.raises(WeightsError, match=message):
        gen.validate(model.meta["generation"], 5)
    path = tmp_path / "bad.npz"
    save_weights(model, path)  # a well-formed file (checksum recomputed) with a malformed fill AR
    with pytest.raises(WeightsError, match=message) as exc:
        ModelStore(tmp_path / "state").install(path)
    assert "\n" not in str(exc.value)


def test_generated_values_have_the_training_cross_correlations(real_model, split):  # noqa: F811
    # the innovations are chosen for the values' correlations (NORTA), not the scores' residuals
    q, _, tr, _, _ = split
    tm = gen.time_model(real_model)
    assert tm is not None and tm.gen_chol is not None and not np.allclose(tm.gen_chol, tm.chol)
    x, _ = gen.generate(real_model, 4 * len(tr), np.random.default_rng(11))
    want = np.corrcoef(q[tr].T)
    got = np.corrcoef(x.T)
    assert np.abs(got - want).max() <= 0.08, np.round(got - want, 3)


def test_a_malformed_generation_cholesky_factor_is_refused(real_model):  # noqa: F811
    meta = json.loads(json.dumps(real_model.meta["generation"]))
    meta["gen_chol"][0][1] = 0.3
    with pytest.raises(WeightsError, match="gen_chol must be lower triangular"):
        gen.validate(meta, 5)
    meta["gen_chol"] = [[1.0]]
    with pytest.raises(WeightsError, match="gen_chol has shape"):
        gen.validate(meta, 5)
