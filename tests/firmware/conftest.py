"""Exports compiled once per session: the demo model, a trained weather model, a residual-grid model
(the codec tests' data sets), and the --lpp builder; each with the system gcc, plain and sanitized."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from firmware_tools.export_c import export_lpp, export_model
from gateway.codec import Channel, Model, Schema, demo_model, train
from gateway.codec.csvio import read_csv
from tests.codec.conftest import burst_series, grid_series, parity_series

from . import cbuild

CODEC_DATA = Path(__file__).parents[1] / "codec" / "data"


@pytest.fixture(scope="session")
def gcc_path() -> str:
    path = cbuild.gcc()
    if path is None:
        pytest.fail("gcc is not installed: the C export cannot be compiled (scripts/bootstrap installs it)")
    return path


def _weather():
    schema = Schema.load(CODEC_DATA / "weather.toml")
    q, _ = read_csv(CODEC_DATA / "weather-400.csv", schema)
    return schema, q


@pytest.fixture(scope="session")
def datasets() -> dict[str, tuple]:
    """name → (model, quantised series the frames are cut from)."""
    schema, q = _weather()
    demo = demo_model()
    dq, _ = read_csv(CODEC_DATA / "weather-400.csv", demo.schema)
    g = grid_series()
    gschema = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    weather = train(q, schema, 16, buckets=3, model_id=3, version=2)
    # No trained model here pulls towards base (lev = 0): a variant with every predictor term set
    # covers that path of the C encoder too.
    p = weather.params
    lev = np.array([-300, 0, 150, -4000, 77][: p.channels], dtype=np.int64)
    a1 = p.a1.copy()
    a1[0, 1] = 900
    full = Model(schema, replace(p, lev=lev, a1=a1), 12, model_id=15, version=0xFFFF_FFFF)
    # Prediction modes (bitstream revision 4): trained where they pay, then snap on both channels and
    # the lattice phase on the first, so every mode's path of the C encoder runs.
    pq = parity_series(2000)
    pschema = Schema(tuple(Channel(f"cgm{i}", "", 1.0) for i in range(2)))
    pm = train(pq[:1500], pschema, 16, buckets=2, model_id=6, version=4)
    pm = Model(pschema, replace(pm.params, pmode=np.where(pm.params.grid != 256, [3, 1], 0)), 16, 6, 4)
    # Activity weights (bitstream revision 5): trained on shared bursts, and forced onto the modes
    # model so the weighted activity meets the grid, the snap and the lattice phase.
    bq = burst_series()
    bschema = Schema(tuple(Channel(f"ax{i}", "", 1.0) for i in range(3)))
    aw = train(bq[:1000], bschema, 16, buckets=3, model_id=8, version=3)
    am = Model(pschema, replace(pm.params, actw=np.array([[7, 0], [300, 16]])), 16, 6, 5)
    return {
        "actw": (aw, bq[1000:]),
        "actw_modes": (am, pq[1500:]),
        "pmode": (pm, pq[1500:]),
        "demo": (demo, dq),
        "weather": (weather, q),
        "grid": (train(g[:400], gschema, 16, buckets=2, model_id=9, version=11), g[400:]),
        "full": (full, q),
    }


@pytest.fixture(scope="session")
def exports(tmp_path_factory, gcc_path, datasets) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, (model, _q) in datasets.items():
        export_model(model, root / name)
        out[name] = root / name
    export_lpp(root / "lpp")
    out["lpp"] = root / "lpp"
    return out


@pytest.fixture(scope="session")
def harnesses(exports, tmp_path_factory) -> dict[tuple[str, bool], cbuild.Harness]:
    """(export name, sanitized) → compiled harness."""
    bins = tmp_path_factory.mktemp("bin")
    # Sanitized builds of every export but "weather" and "actw", whose paths "full" and "actw_modes" cover.
    variants = [
        (name, san) for name in exports for san in (False, True) if not (san and name in ("weather", "actw"))
    ]
    jobs = {f"{name}-{int(san)}": (exports[name], bins / f"{name}-{int(san)}", san) for name, san in variants}
    built = cbuild.build_all(jobs)
    return {(name, san): built[f"{name}-{int(san)}"] for name, san in variants}


def as_c_rows(samples: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in np.asarray(samples).ravel())
