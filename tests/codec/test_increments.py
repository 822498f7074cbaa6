"""Gap filling on a channel's increments (gateway.codec.increments): readings that wander."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gateway.codec import ModelStore, Schema, fill, increments, load_weights, save_weights, train_to_size
from gateway.codec import generate as gen
from gateway.codec.errors import WeightsError
from gateway.codec.schema import Channel


def _gappy(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    out, gaps, pos = x.astype(np.float64).copy(), [], 40
    while pos + 60 < len(x):
        length = int(rng.integers(6, 17))
        gaps.append((pos, length))
        out[pos : pos + length] = np.nan
        pos += length + 48 + int(rng.integers(0, 48))
    return out, gaps


def _linear(x: np.ndarray) -> np.ndarray:
    t = np.arange(len(x))
    ok = ~np.isnan(x)
    return np.interp(t, t[ok], x[ok])


def _momentum_walk(n: int, phi: float, seed: int) -> np.ndarray:
    """A walk whose changes are AR(1): a trend carries on for a few rows (sea temperature, a CGM)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    d = np.zeros(n)
    for i in range(1, n):
        d[i] = phi * d[i - 1] + e[i]
    return np.cumsum(20 * d)


def test_white_changes_fill_as_linear_interpolation():
    # the conditional mean of a random walk pinned at both ends is the straight line between them
    acov = np.array([25.0, 0.0, 0.0, 0.0, 0.0])
    x = np.cumsum(np.random.default_rng(1).normal(0, 5, 600))
    gappy, _ = _gappy(x, np.random.default_rng(2))
    got = increments.fill_channel(gappy, acov)
    assert np.allclose(got, _linear(gappy), atol=1e-6)
    assert np.array_equal(got[~np.isnan(gappy)], x[~np.isnan(gappy)])


def test_correlated_changes_fill_better_than_linear_interpolation():
    x = _momentum_walk(20000, 0.8, 3)
    acov = increments.learn(x[:10000, None], 16)[0]
    gappy, _ = _gappy(x[10000:], np.random.default_rng(4))
    got = increments.fill_channel(gappy, acov)
    lin = _linear(gappy)
    miss = np.isnan(gappy)
    ratio = np.abs(got - x[10000:])[miss].sum() / np.abs(lin - x[10000:])[miss].sum()
    assert ratio < 0.8  # the trend into and out of the gap bends the estimate


def test_gaps_at_the_ends_and_a_channel_never_seen():
    x = _momentum_walk(400, 0.8, 5)
    acov = increments.learn(x[:, None], 8)[0]
    g = x.copy()
    g[:12] = np.nan
    g[-9:] = np.nan
    got = increments.fill_channel(g, acov)
    assert np.all(np.isfinite(got)) and np.array_equal(got[12:-9], x[12:-9])
    assert np.abs(got[:12] - x[:12]).max() < 20 * 40  # a forecast, not an explosion
    empty = np.full(10, np.nan)
    assert np.all(np.isnan(increments.fill_channel(empty, acov)))


def test_the_cut_off_autocovariance_is_windowed_so_a_strong_cycle_still_solves():
    # a daily cycle in the changes: the raw autocovariance cut off at 32 lags is not a covariance
    t = np.arange(5000)
    x = 100 * np.sin(2 * np.pi * t / 24) + np.cumsum(np.random.default_rng(7).normal(0, 3, len(t)))
    acov = increments.learn(x[:, None], 32)[0]
    m = 65
    idx = np.abs(np.arange(m)[:, None] - np.arange(m)[None, :])
    raw = np.where(idx <= 32, acov[np.minimum(idx, 32)], 0.0)
    win = increments.window(acov)
    windowed = np.where(idx <= 32, win[np.minimum(idx, 32)], 0.0)
    assert np.linalg.eigvalsh(raw).min() < 0 <= np.linalg.eigvalsh(windowed).min() + 1e-9
    gappy, _ = _gappy(x, np.random.default_rng(8))
    got = increments.fill_channel(gappy, acov)
    miss = np.isnan(gappy)
    assert np.abs(got - x)[miss].mean() < np.abs(_linear(gappy) - x)[miss].mean()


def _walk_model():
    """A drifting sea temperature at 0.01 °C every 30 minutes, with time stamps."""
    n = 4000
    x = 1200 + _momentum_walk(n, 0.5, 9) / 20
    schema = Schema((Channel("temperature", "°C", 0.01),))
    q = np.rint(x).astype(np.int64)[:, None]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = [(t0 + timedelta(minutes=30 * i)).isoformat() for i in range(n)]
    model, data = train_to_size(q, schema, 16, times=times)
    return model, data, q


@pytest.fixture(scope="module")
def walk():
    return _walk_model()


def test_training_chooses_increments_for_a_wandering_channel_and_fill_uses_them(walk, tmp_path):
    model, data, q = walk
    tm = gen.time_model(model)
    assert tm is not None and tm.increments is not None and tm.increments.channels == (0,)
    path = tmp_path / "m.npz"
    path.write_bytes(data)
    back = gen.time_model(load_weights(path))
    assert back.increments is not None and back.increments.channels == (0,)
    assert np.allclose(back.increments.acov[0], tm.increments.acov[0], rtol=1e-3)
    x = q[-300:].astype(float)
    x[100:112, 0] = np.nan
    assert back.increments.weights() == tm.increments.weights()
    filled, est = fill.fill_series(load_weights(path), x)
    (w,) = back.increments.weights()
    by_ar = fill._fill_with(dataclasses.replace(back, increments=None), x, None)
    expect = np.rint(w * back.increments.fill(x)[100:112, 0] + (1 - w) * by_ar[100:112, 0])
    assert est[100:112, 0].all() and np.array_equal(filled[100:112, 0], expect.astype(np.int64))
    # the service's path (one frame of history, the frame after) fills the same way
    gap = fill.fill_gap(load_weights(path), q[-316:-300], 12, q[-288:-272])
    assert gap.shape == (12, 1) and np.all(np.isfinite(gap))


def test_a_mean_reverting_channel_keeps_the_score_ar():
    rng = np.random.default_rng(10)
    n = 4000
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.6 * x[i - 1] + rng.normal(0, 30)
    schema = Schema((Channel("humidity", "%", 0.1),))
    q = np.rint(500 + x).astype(np.int64)[:, None]
    model, _ = train_to_size(q, schema, 16)
    tm = gen.time_model(model)
    assert tm is not None and tm.increments is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(channels=[3]), "increments must list distinct channels"),
        (lambda m: m.update(channels=[0, 0], acov=m["acov"] * 2), "increments must list"),
        (lambda m: m.update(channels=[True]), "increments must list"),
        (lambda m: m["acov"][0].__setitem__(0, -1.0), "positive variance"),
        (lambda m: m["acov"][0].__setitem__(1, 1e9), "positive variance"),
        (lambda m: m.update(acov=[[1.0] * 40]), "at most 32 lags"),
        (lambda m: m.update(acov=[["x"]]), "increments must list"),
        (lambda m: m.update(extra=1), "increments must list"),
        (lambda m: m.update(weight=[0]), "weights in \\(0, 1\\]"),
        (lambda m: m.update(weight=[1.5]), "weights in"),
        (lambda m: m.update(weight=[0.5, 0.5]), "weights in"),
        (lambda m: m.update(weight="half"), "weights in"),
        (lambda m: m.update(weight=[True]), "weights in"),
    ],
)
def test_malformed_increments_are_refused_at_install(walk, tmp_path, change, message):
    model, _, _ = walk
    bad = copy.deepcopy(model)
    meta = json.loads(json.dumps(bad.meta["generation"]))
    change(meta["increments"])
    bad.meta["generation"] = meta
    with pytest.raises(WeightsError, match=message):
        gen.validate(meta, 1)
    path = tmp_path / "bad.npz"
    save_weights(bad, path)
    with pytest.raises(WeightsError, match=message) as exc:
        ModelStore(tmp_path / "state").install(path)
    assert "\n" not in str(exc.value)


def test_a_blend_weighs_the_two_fills_and_a_file_without_weights_takes_the_increments_alone(walk):
    model, _, q = walk
    tm = gen.time_model(model)
    inc = tm.increments
    x = q[-300:].astype(float)
    x[50:64, 0] = np.nan
    by_ar = fill._fill_with(dataclasses.replace(tm, increments=None), x, None)[50:64, 0]
    by_inc = inc.fill(x)[50:64, 0]
    assert np.abs(by_ar - by_inc).max() > 0.1  # the two methods disagree here: the blend shows
    half = dataclasses.replace(tm, increments=dataclasses.replace(inc, weight=(0.5,)))
    assert np.allclose(fill._fill_with(half, x, None)[50:64, 0], (by_ar + by_inc) / 2)
    meta = inc.to_meta()
    meta.pop("weight", None)  # a weight file written before the blend
    old = increments.from_meta(meta, 1)
    assert old.weights() == (1.0,)
    whole = dataclasses.replace(tm, increments=old)
    assert np.allclose(fill._fill_with(whole, x, None)[50:64, 0], old.fill(x)[50:64, 0])
