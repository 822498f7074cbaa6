"""Value lattices (bitstream revision 6): the finder, the index map, and frames coded on them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, lattice, train, weights
from gateway.codec.adapt import adapt
from gateway.codec.errors import CodecError, PayloadError
from gateway.codec.model import FINGERPRINT_TAG_6, fingerprint_message
from gateway.codec.train import frames_of

N = 16


def _adc_series(n: int, seed: int) -> np.ndarray:
    """Three channels: an accelerometer axis written as trunc(1000·counts / 99) mg (crossing zero),
    a temperature converted from whole °F to tenths of °C with rounding and a few readings that were
    never whole °F, and a plain humidity (no lattice)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    counts = np.rint(60 * np.sin(t / 9.0) + np.cumsum(rng.normal(0, 2, n)) * 0.3).astype(np.int64)
    accel = np.trunc(1000 * counts / 99).astype(np.int64)
    fahr = np.rint(50 + 20 * np.sin(t / 40.0) + rng.normal(0, 1.0, n)).astype(np.int64)
    temp = np.floor((100 * fahr - 3200 + 9) / 18).astype(np.int64)  # round((°F − 32)·50/9)
    odd = rng.random(n) < 0.01
    temp[odd] += 1
    hum = np.clip(np.rint(60 + 20 * np.sin(t / 50.0) + rng.normal(0, 2, n)), 0, 100).astype(np.int64)
    return np.stack([accel, temp, hum], axis=1)


SCHEMA = Schema(
    (
        Channel("accel", "mg", 1.0),
        Channel("temp", "°C", 0.1, min=-40.0, max=60.0),
        Channel("hum", "%", 1.0, min=0.0, max=100.0),
    )
)


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return _adc_series(4000, 1)


@pytest.fixture(scope="module")
def lattice_model(series) -> Model:
    return train(series[:2000], SCHEMA, N)


def test_finder_recovers_an_adc_scale_and_a_unit_conversion(series):
    vm, vframe = lattice.find_all(series)
    assert not vframe.any()  # no frame flags without a frame size
    accel, temp, hum = vm.tolist()
    # 1000/99 through zero, or a fraction as simple that makes the same readings over their range
    assert accel[3] == lattice.TRUNC and abs(accel[0] / accel[2] - 1000 / 99) < 1e-3
    assert temp[3] == lattice.FLOOR and abs(temp[0] / temp[2] - 50 / 9) < 1e-9
    assert hum[3] == lattice.NONE
    _k, j = lattice.index(series, vm)
    assert np.mean(j[:, 0] == 0) == 1.0
    assert 0.97 < np.mean(j[:, 1] == 0) < 1.0  # the off-°F readings are off it, and still coded
    assert 1 <= temp[4] <= 4096 * 0.03  # the flag's frequency follows the training share


def test_finder_needs_no_repeated_readings():
    """A sweep where no reading repeats (a short or slowly drifting recording) still shows its
    lattice: every reading is then as common as any other."""
    sweep = -np.trunc(1000 * np.arange(1, 2000) / 99).astype(np.int64)
    assert lattice.find(sweep) == (1000, 0, 99, lattice.TRUNC)
    high = (2**30 - 1) - 7 * np.arange(1000)  # near the value limit, a step of 7
    p, _q, d, mode = lattice.find(high)
    assert mode != lattice.NONE and p == 7 * d
    coarse = np.arange(-500, 500) * 1_000_000  # one step far above the fraction search's range
    assert lattice.find(coarse)[0] == 1_000_000


def test_finder_leaves_unstructured_data_alone():
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.integers(-3, 4, 5000))
    assert lattice.find(walk) == lattice.IDENTITY
    sparse = rng.choice(np.arange(-5000, 5000), 3000)  # wide gaps but no common step
    assert lattice.find(sparse) == lattice.IDENTITY


@pytest.mark.parametrize(
    "row",
    [(1000, 0, 99, lattice.TRUNC), (100, 9, 18, lattice.FLOOR), (767, 40, 79, lattice.TRUNC), (2, 1, 1, 1)],
)
def test_index_and_value_are_inverse_for_every_integer(row):
    vm = np.array([[*row, 7]], dtype=np.int64)
    x = np.concatenate([np.arange(-3000, 3000), [-(2**30) + 1, 2**30 - 1]])[:, None]
    k, j = lattice.index(x, vm)
    g = lattice.gap(k, vm)
    assert np.array_equal(lattice.value(k, vm) + j, x)
    assert np.all(j >= 0) and np.all(j < g) and np.all(g >= 2)
    on = lattice.value(np.arange(-200, 200)[:, None], vm)
    assert np.all(np.diff(on[:, 0]) >= 2)
    assert np.array_equal(lattice.index(on, vm)[1], np.zeros_like(on))


def test_lattice_frames_round_trip_in_both_decoders(lattice_model, series):
    frames = frames_of(series[2000:], N)
    payloads = lattice_model.encode_many(frames)
    for f, got in zip(frames, lattice_model.decode_many(payloads), strict=True):
        assert np.array_equal(got, f)
    for i in range(0, len(frames), 5):
        assert np.array_equal(lattice_model.decode(payloads[i]), frames[i])


def test_off_lattice_and_extreme_readings_stay_lossless(lattice_model, series):
    frame = series[2000 : 2000 + N].copy()
    frame[2, 0] += 1  # off the ADC lattice
    frame[5, 1] += 3
    frame[9, 0] = -(2**30) + 1
    frame[10, 0] = 2**30 - 1
    frame[11, 1] = 2**30 - 1
    payload = lattice_model.encode(frame)
    assert np.array_equal(lattice_model.decode(payload), frame)
    assert np.array_equal(lattice_model.decode_many([payload])[0], frame)
    short = frame[:3]
    assert np.array_equal(lattice_model.decode(lattice_model.encode(short)), short)


def test_the_lattice_saves_bytes_over_coding_the_readings(lattice_model, series, monkeypatch):
    frames = frames_of(series[2000:], N)
    monkeypatch.setattr(lattice, "find_all", lambda q, n=None, partial=True: lattice.nothing(q.shape[1]))
    plain = train(series[:2000], SCHEMA, N)
    assert not np.any(plain.params.vmap[:, 3])
    with_lattice = sum(map(len, lattice_model.encode_many(frames)))
    without = sum(map(len, plain.encode_many(frames)))
    assert with_lattice < 0.9 * without, (with_lattice, without)
    # Prediction errors are reported in readings either way (live stats compare them with training).
    ratio = np.abs(lattice_model.residuals(frames)).mean(axis=(0, 1)) / np.abs(plain.residuals(frames)).mean(
        axis=(0, 1)
    )
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_corrupted_payloads_are_refused_or_decoded_alike_never_a_crash(lattice_model, series):
    rng = np.random.default_rng(7)
    frames = frames_of(series[2000:2800], N)
    bad = []
    for p in lattice_model.encode_many(frames):
        for _ in range(4):
            b = bytearray(p)
            if b:
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
            bad.append(bytes(b))
        bad.append(p[: max(0, len(p) - 1)])
    batch = lattice_model.decode_each(bad)
    for payload, got in zip(bad, batch, strict=True):
        try:
            one = lattice_model.decode(payload)
        except PayloadError:
            assert isinstance(got, PayloadError)
            continue
        assert not isinstance(got, PayloadError) and np.array_equal(one, got)
    assert sum(isinstance(g, PayloadError) for g in batch) > len(bad) // 3


def test_weight_file_format_5_and_fingerprint_revision_6(lattice_model, series):
    data = weights.to_bytes(lattice_model)
    loaded = weights.from_bytes(data)
    assert loaded.meta["format"] == weights.FORMAT_VMAP
    assert np.array_equal(loaded.params.vmap, lattice_model.params.vmap)
    assert loaded.fingerprint == lattice_model.fingerprint
    assert fingerprint_message(lattice_model).startswith(FINGERPRINT_TAG_6)
    frame = series[2100 : 2100 + N]
    assert np.array_equal(loaded.decode(lattice_model.encode(frame)), frame)
    # The same tables without the lattice are another bitstream: another fingerprint.
    other = Model(SCHEMA, replace(lattice_model.params, vmap=None), N)
    assert other.fingerprint != lattice_model.fingerprint


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ((10, 0, 6, 1, 5), "2·D ≤ P"),
        ((1000, 1000, 99, 2, 5), "0 ≤ Q < P"),
        ((1000, 0, 99, 2, 0), "off-lattice frequency"),
        ((1000, 0, 99, 3, 5), "unknown mode"),
        ((1000, 5, 99, 2, 5), "through zero"),
        ((1, 0, 1, 0, 3), "mode 0"),
    ],
)
def test_a_malformed_lattice_is_refused_in_one_line(lattice_model, row, words):
    vm = lattice_model.params.vmap.copy()
    vm[0] = row
    with pytest.raises(CodecError, match=words):
        Model(SCHEMA, replace(lattice_model.params, vmap=vm), N)


def test_adapting_keeps_the_sensor_lattice_and_stays_lossless(lattice_model):
    new = _adc_series(2000, 9)
    new[:, 2] = np.clip(new[:, 2] + 10, 0, 100)
    adapted = adapt(lattice_model, new)
    assert np.array_equal(adapted.params.vmap[:, :4], lattice_model.params.vmap[:, :4])
    frames = frames_of(new, N)
    for f, got in zip(frames, adapted.decode_many(adapted.encode_many(frames)), strict=True):
        assert np.array_equal(got, f)


def test_generation_and_gap_filling_give_readings_on_the_lattice(lattice_model, series):
    gen = lattice_model.generate(500, np.random.default_rng(2))
    _k, j = lattice_model.to_index(gen)
    assert np.mean(j[:, 0] == 0) == 1.0
    est = lattice_model.fill_gap(series[1990:2000], 8, series[2008:2010])
    assert est.shape == (8, 3)
    assert np.all(lattice_model.to_index(est)[1][:, 0] == 0)


def _rewritten(model: Model, edit) -> bytes:
    """The model's weight file with its ints edited and the SHA-256 recomputed (a well-formed file
    with bad content, as a buggy or hostile trainer would write)."""
    import io
    import json

    from gateway.codec.weights import _digest

    with np.load(io.BytesIO(weights.to_bytes(model))) as npz:
        ints, freq, raw = npz["ints"].copy(), npz["freq"], npz["meta"]
    meta = json.loads(raw.tobytes().decode())
    edit(ints, meta)
    meta["sha256"] = _digest(ints, freq, meta)
    buf = io.BytesIO()
    np.savez_compressed(buf, ints=ints, freq=freq, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return buf.getvalue()


def test_a_weight_file_with_a_bad_lattice_or_an_older_format_is_refused(lattice_model):
    c = len(SCHEMA)

    def bad_lattice(ints, meta):
        ints[-5 * c + 2] = 10**6  # channel 0's D: above P / 2

    with pytest.raises(weights.WeightsError, match="value lattice of channel 0"):
        weights.from_bytes(_rewritten(lattice_model, bad_lattice), "bad.npz")

    def as_format_4(ints, meta):
        meta["format"] = weights.FORMAT_ACTW  # a format without lattices: the sizes do not add up

    with pytest.raises(weights.WeightsError, match="array sizes do not match"):
        weights.from_bytes(_rewritten(lattice_model, as_format_4), "old.npz")


def test_learned_generation_and_filling_stay_on_the_sensor_lattice(series):
    """With the learned time structure (train_to_size), generated readings and gap estimates are
    values the sensor can report: on its lattice, within the model's range."""
    from gateway.codec import train_to_size
    from gateway.codec.fill import fill_series

    model, _ = train_to_size(series[:2000], SCHEMA, N)
    assert model.meta["generation"].get("format") == "lora-gw-gen/2"
    gen = model.generate(600, np.random.default_rng(5))
    _k, j = model.to_index(gen)
    assert np.all(j[:, 0] == 0) and np.all(j[:, 1] == 0)
    assert np.all(gen >= model.params.lo) and np.all(gen <= model.params.hi)
    gappy = series[2000:2300].astype(np.float64)
    gappy[50:62] = np.nan
    gappy[120:130, 0] = np.nan
    filled, est = fill_series(model, gappy)
    assert est.sum() == 12 * 3 + 10
    _k, j = model.to_index(filled)
    assert np.all(j[est[:, 0], 0] == 0) and np.all(j[est[:, 1], 1] == 0)
    assert np.array_equal(filled[~est], series[2000:2300][~est])  # known cells untouched


def test_the_offset_sweep_and_the_batched_search_agree_with_the_lattice_definition():
    """A reading u is on the floor lattice (P, Q, D) iff some P·k + Q lies in [D·u, D·u + D − 1], that is
    (Q − D·u) mod P < D; on trunc's, a negative u needs [D·u − D + 1, D·u]: (D·u − Q) mod P < D.
    Counted offset by offset, the slow way."""
    from gateway.codec.lattice import FLOOR, TRUNC, _cover, _covers_at_zero

    rng = np.random.default_rng(11)
    for _ in range(300):
        u = np.unique(rng.integers(-300, 2000, int(rng.integers(3, 80))))
        w = rng.integers(1, 9, len(u)).astype(np.float64)
        d = int(rng.integers(1, 12))
        p = int(rng.integers(2 * d, 2 * d + 90))
        on = np.array([[(q - d * x) % p < d for x in u] for q in range(p)])  # floor, every offset
        cover = on.astype(np.float64) @ w
        assert _cover(u, w, p, d, FLOOR) == (int(np.argmax(cover)), float(cover.max()))
        assert _cover(u, w, p, d, FLOOR, zero=True) == (0, float(cover[0]))
        trunc0 = np.where(u >= 0, (-d * u) % p < d, (d * u) % p < d)  # offset 0
        assert _cover(u, w, p, d, TRUNC) == (0, float(trunc0 @ w))
        assert np.array_equal(_covers_at_zero(u, w, [(p, d, FLOOR), (p, d, TRUNC)]), [cover[0], trunc0 @ w])
