from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.codec import Model, Schema, demo_model, train
from gateway.codec.csvio import read_csv

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def schema() -> Schema:
    return Schema.load(DATA / "weather.toml")


@pytest.fixture(scope="session")
def series(schema: Schema) -> np.ndarray:
    q, _ = read_csv(DATA / "weather-400.csv", schema)
    return q


@pytest.fixture(scope="session")
def model(schema: Schema, series: np.ndarray) -> Model:
    return train(series, schema, 16, buckets=3, model_id=3, version=2)


@pytest.fixture(scope="session")
def demo() -> Model:
    return demo_model()


def parity_series(n: int = 1200, seed: int = 3) -> np.ndarray:
    """Two channels like a CGM sensor's current: a smooth drift whose changes persist (AR(1) on the
    deltas), read mostly as even values (one in six odd): the case of the prediction modes."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 2))
    for ch in range(2):
        d = np.zeros(n)
        for t in range(1, n):
            d[t] = 0.7 * d[t - 1] + rng.normal(0, 30)
        out[:, ch] = 5000 + np.cumsum(d)
    even = 2 * np.rint(out / 2)
    odd = rng.random(out.shape) < 1 / 6
    return (even + odd * rng.choice([-1, 1], size=out.shape)).astype(np.int64)


def grid_series(n: int = 600, seed: int = 7) -> np.ndarray:
    """Three channels of scaled-ADC style data (values on a ~10.1 lattice ± 1), like Daphnet."""
    rng = np.random.default_rng(seed)
    counts = np.cumsum(rng.integers(-6, 7, size=(n, 3)), axis=0)
    return np.rint(counts * 10.1 + rng.integers(-1, 2, size=(n, 3))).astype(np.int64)


def burst_series(n: int = 1500, seed: int = 5) -> np.ndarray:
    """Three channels that move in shared bursts (one calm or busy spell for all, like the axes of
    one accelerometer): each change's spread is the same for every channel at a step, but each
    channel's sign and size are its own, so only the residual sizes carry across channels (the case
    of the activity weights, bitstream revision 5)."""
    rng = np.random.default_rng(seed)
    busy = np.repeat(rng.random(n // 4 + 1) < 0.3, 4)[:n]
    scale = np.where(busy, 40.0, 2.0) * rng.lognormal(0, 0.5, n)
    d = rng.laplace(0, 1, (n, 3)) * scale[:, None]
    return np.rint(1000 + np.cumsum(d, axis=0)).astype(np.int64)
