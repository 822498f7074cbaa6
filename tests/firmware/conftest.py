"""Exports compiled once per session: the demo model, a trained weather model, a residual-grid model
(the codec tests' data sets), and the --lpp builder; each with the system gcc, plain and sanitized."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from firmware_tools.export_c import export_lpp, export_model
from gateway.codec import Channel, Model, Schema, demo_model, lattice, train
from gateway.codec.csvio import read_csv
from gateway.codec.model import Params
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


def lattice_series(n: int = 1600, seed: int = 5) -> np.ndarray:
    """Readings on value lattices (bitstream revision 6): a scaled ADC around zero,
    ``trunc(1000·counts / 99)`` (mode 2), a plain channel, and whole °F in tenths of °C,
    ``round((°F − 32)·50/9)`` (mode 1), with a few readings off that lattice."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(n, dtype=np.int64)
    for t in range(1, n):
        counts[t] = round(0.98 * counts[t - 1] + rng.normal(0, 6))
    adc = np.trunc(1000 * counts / 99).astype(np.int64)
    plain = np.cumsum(rng.integers(-4, 5, n)) + 500
    whole_f = 40 + np.cumsum(rng.integers(-1, 2, n))
    tenths_c = np.floor((whole_f - 32) * 50 / 9 + 0.5).astype(np.int64)
    off = rng.choice(n, n // 150, replace=False)
    tenths_c[off] += rng.integers(1, 4, len(off))
    return np.stack([adc, plain, tenths_c], axis=1)


def resolution_series(n: int = 1400, seed: int = 6) -> np.ndarray:
    """A drifting current read at full resolution for 300 readings, then even readings only (a
    sensor whose resolution halved: a lattice for stretches, bitstream revision 7), beside a
    temperature that never changes resolution."""
    rng = np.random.default_rng(seed)
    walk = 500 + np.cumsum(rng.normal(0, 5, n))
    cur = np.rint(walk).astype(np.int64)
    cur[300:] = 2 * np.floor(walk[300:] / 2).astype(np.int64)
    temp = np.rint(200 + 30 * np.sin(np.arange(n) / 60) + rng.normal(0, 1, n)).astype(np.int64)
    return np.stack([cur, temp], axis=1)


def _widened(p: Params, rows: list[int]) -> Params:
    """Params whose channel i is channel rows[i] of p (weights between channels follow; the
    same-sample and activity weights stay on earlier channels), for a wider forced model
    without training one."""
    idx = np.asarray(rows)
    square = {name: getattr(p, name)[np.ix_(idx, idx)] for name in ("a0", "a1", "a2", "actw")}
    rowed = ("base", "lev", "thr", "shift", "freq", "lo", "hi", "grid", "jfreq", "pmode", "vmap", "vframe")
    return replace(
        p,
        **{name: getattr(p, name)[idx] for name in rowed},
        a0=np.tril(square["a0"], -1),
        a1=square["a1"],
        a2=np.tril(square["a2"], -1),
        actw=np.tril(square["actw"], -1) + np.diag(np.diag(p.actw)[idx]),
    )


def _lattice_models() -> dict[str, tuple]:
    """A model trained on lattice data, and a variant forced onto every path of the C encoder's
    lattice code: the grid, both prediction modes and cross-channel activity weights on indices, a
    wide lattice (jitters of 17 raw bits, two chunks) and a mode-2 lattice with P = 2·D (steps of 2,
    so jitters of 0 raw bits, and a channel crossing zero). Then frame flags (revision 7): a model
    trained on a resolution change, and the forced one widened by a fourth channel (the trained
    °F lattice) with frame flags G = 4000, 2048, none and 1 (extreme frequencies both ways, and a
    lattice channel without a frame flag between flagged ones)."""
    lq = lattice_series()
    lschema = Schema(tuple(Channel(f"lat{i}", "", 1.0) for i in range(3)))
    lm = train(lq[:1200], lschema, 16, buckets=2, model_id=10, version=6)
    p = lm.params
    vmap = p.vmap.copy()
    vmap[1] = (200_005, 77, 3, lattice.FLOOR, 600)
    vmap[2] = (4, 0, 2, lattice.TRUNC, 2048)
    jfreq = np.ones_like(p.jfreq)
    jfreq[..., 0] = 4096 - 63
    forced = replace(
        p,
        grid=np.array([700, 256, 600]),
        pmode=np.array([3, 0, 1]),
        actw=np.array([[7, 0, 0], [300, 16, 0], [20, 40, 16]]),
        vmap=vmap,
        jfreq=jfreq,
    )
    # The wide channel mostly on its lattice (indices a small walk), 5 % off it.
    fq = lq[1200:].copy()
    fq[:, 1] = lattice.value(((fq[:, 1] - 430) // 25)[:, None], vmap[1:2])[:, 0]
    rng = np.random.default_rng(8)
    off = rng.random(len(fq)) < 0.05
    fq[off, 1] += rng.integers(1, 66666, int(off.sum()))
    rq = resolution_series()
    rschema = Schema((Channel("current", "nA", 0.01), Channel("temp", "degC", 0.1)))
    rm = train(rq[:600], rschema, 16, buckets=2, model_id=13, version=7)
    wide = _widened(forced, [0, 1, 2, 2])
    wvmap = wide.vmap.copy()
    wvmap[3] = p.vmap[p.vmap[:, 3] == lattice.FLOOR][0]
    wide = replace(wide, vmap=wvmap, vframe=np.array([4000, 2048, 0, 1]))
    wschema = Schema(tuple(Channel(f"lat{i}", "", 1.0) for i in range(4)))
    return {
        "vmap": (lm, lq[1200:]),
        "vmap_full": (Model(lschema, forced, 16, 11, 7), fq),
        "vframe": (rm, rq),  # the whole series: fine, coarse and mixed frames
        "vframe_full": (Model(wschema, wide, 16, 12, 7), np.column_stack([fq, lq[1200:, 2]])),
    }


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
        **_lattice_models(),
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
    # Sanitized builds of every export but "weather", "actw", "vmap" and "vframe", whose paths "full",
    # "actw_modes", "vmap_full" and "vframe_full" cover.
    unsanitized = ("weather", "actw", "vmap", "vframe")
    variants = [(name, san) for name in exports for san in (False, True) if not (san and name in unsanitized)]
    jobs = {f"{name}-{int(san)}": (exports[name], bins / f"{name}-{int(san)}", san) for name, san in variants}
    built = cbuild.build_all(jobs)
    return {(name, san): built[f"{name}-{int(san)}"] for name, san in variants}


def as_c_rows(samples: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in np.asarray(samples).ravel())
