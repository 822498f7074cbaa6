"""Frame flags and lattices that hold for stretches (bitstream revision 7): a sensor whose
resolution changes, as the CGM set's current does (0.01 nA for two months, then 0.02 nA)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, demo_model, lattice, train, weights
from gateway.codec.adapt import adapt
from gateway.codec.csvio import read_csv
from gateway.codec.errors import CodecError
from gateway.codec.model import FINGERPRINT_TAG_6, FINGERPRINT_TAG_7, fingerprint_message
from gateway.codec.train import frames_of

N = 16
SCHEMA = Schema((Channel("current", "nA", 0.01), Channel("temp", "°C", 0.1)))


def _resolution_change(n: int, seed: int, fine_until: int) -> np.ndarray:
    """A drifting current read at full resolution until ``fine_until``, then at half (even
    readings only), beside a temperature that never changes resolution."""
    rng = np.random.default_rng(seed)
    walk = 2000 + np.cumsum(rng.normal(0, 6, n))
    cur = np.rint(walk).astype(np.int64)
    coarse = np.arange(n) >= fine_until
    cur[coarse] = 2 * np.floor(walk[coarse] / 2).astype(np.int64)
    temp = np.rint(200 + 30 * np.sin(np.arange(n) / 60) + rng.normal(0, 1, n)).astype(np.int64)
    return np.stack([cur, temp], axis=1)


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return _resolution_change(8000, 3, fine_until=2500)


@pytest.fixture(scope="module")
def model(series) -> Model:
    return train(series[:4000], SCHEMA, N)


def test_the_trainer_finds_the_coarse_stretches_and_gives_them_a_frame_flag(model):
    p = model.params
    assert p.vmap[0].tolist()[:4] in ([2, 0, 1, lattice.TRUNC], [2, 0, 1, lattice.FLOOR])
    assert 0 < p.vframe[0] < 4096 and p.vmap[1, 3] == lattice.NONE and p.vframe[1] == 0
    # G: the share of frames with an odd reading in the latest regime (the last eighth of the
    # training rows, all coarse: none), at least 1/16, so a frame on the lattice costs 0.09 bits
    # (at the whole span's share, 62.5 % capped at one half, it cost 1 bit); F: about half within them.
    assert p.vframe[0] == lattice.MIN_RECENT_G == 256
    assert abs(p.vmap[0, 4] / 4096 - 0.5) < 0.05


def test_revision_6_finder_finds_no_lattice_there(series):
    vmap, vframe = lattice.find_all(series[:4000])
    assert not vmap[:, 3].any() and not vframe.any()


def test_frames_round_trip_in_both_decoders_fine_coarse_and_mixed(model, series):
    frames = frames_of(series[2000:3200], N)  # fine, then coarse, and one frame across the change
    payloads = model.encode_many(frames)
    for got, want in zip(model.decode_many(payloads), frames, strict=True):
        assert np.array_equal(got, want)
    for i in (0, len(frames) // 2, len(frames) - 1):
        assert np.array_equal(model.decode(payloads[i]), frames[i])
    short = frames[-1][:3]
    assert np.array_equal(model.decode(model.encode(short)), short)


def test_coarse_frames_cost_less_than_under_revision_6(model, series, monkeypatch):
    finder = lattice.find_all
    monkeypatch.setattr(lattice, "find_all", lambda q, n=None, partial=True: finder(q))
    old = train(series[:4000], SCHEMA, N)
    assert not old.params.vmap[:, 3].any()
    coarse = frames_of(series[4000:], N)
    new_b = sum(map(len, model.encode_many(coarse)))
    old_b = sum(map(len, old.encode_many(coarse)))
    assert new_b < 0.93 * old_b, (new_b, old_b)
    # The fine frames pay about what they did without a lattice (a flag and the parity for one
    # bit of the index).
    fine = frames_of(series[:2400], N)
    assert sum(map(len, model.encode_many(fine))) < 1.03 * sum(map(len, old.encode_many(fine)))


def test_a_flag_promising_an_off_reading_that_never_comes_is_refused(model, series, monkeypatch):
    """The "some off" frame flag over readings all on the lattice: no encoder makes it (the encoder
    is made to here), and both decoders refuse it instead of decoding it."""
    frame = frames_of(series[5000:5100], N)[:2]
    assert not np.any(frame[..., 0] % 2)
    g, f = int(model.params.vframe[0]), int(model.params.vmap[0, 4])
    tail = Model._lattice_tail

    def lying(self, k, jit):
        hcum, hfreq, cum, freq, val, nbits = tail(self, k, jit)
        hcum[:, 0], hfreq[:, 0] = 4096 - g, g  # "some off" ...
        freq[:, :, 0] = 4096 - f  # ... and then every reading's flag "on"
        return hcum, hfreq, cum, freq, val, nbits

    monkeypatch.setattr(Model, "_lattice_tail", lying)
    bad = model.encode_many(frame)
    monkeypatch.setattr(Model, "_lattice_tail", tail)
    assert bad != model.encode_many(frame)
    for payload, result in zip(bad, model.decode_each(bad), strict=True):
        assert isinstance(result, CodecError), result
        with pytest.raises(CodecError, match="promised a reading off the lattice"):
            model.decode(payload)


def test_weight_file_format_6_and_fingerprint_revision_7(model, tmp_path):
    data = weights.to_bytes(model)
    back = weights.from_bytes(data)
    assert back.meta["format"] == "lora-gw-codec/6"
    assert np.array_equal(back.params.vframe, model.params.vframe)
    assert back.fingerprint == model.fingerprint
    assert fingerprint_message(model).startswith(FINGERPRINT_TAG_7)
    without = Model(SCHEMA, replace(model.params, vframe=np.zeros(2, dtype=np.int64)), N)
    assert fingerprint_message(without).startswith(FINGERPRINT_TAG_6)
    assert without.fingerprint != model.fingerprint
    assert weights.from_bytes(weights.to_bytes(without)).meta["format"] == "lora-gw-codec/5"


@pytest.mark.parametrize(
    ("vframe", "words"),
    [
        ([2048, 7], "without a value lattice"),
        ([4096, 0], "outside 0..4095"),
        ([-1, 0], "outside 0..4095"),
        ([1, 0, 0], "shape"),
    ],
)
def test_a_malformed_frame_flag_is_refused_in_one_line(model, vframe, words):
    with pytest.raises(CodecError, match=words):
        Model(SCHEMA, replace(model.params, vframe=np.array(vframe)), N)


def test_adapting_keeps_a_lattice_that_holds_for_stretches(model, series):
    new = adapt(model, series[4000:6000])
    assert np.array_equal(new.params.vmap[0, :4], model.params.vmap[0, :4])
    frames = frames_of(series[6000:], N)
    for got, want in zip(new.decode_many(new.encode_many(frames)), frames, strict=True):
        assert np.array_equal(got, want)


def test_a_unit_conversion_that_holds_now_and_then_is_not_taken():
    """Sand Point's wind speeds are whole knots (≈ 5.14 tenths of m/s) for a few weeks only: coding
    them on that lattice all year cost 2.5 %, so the trainer leaves them alone."""
    q = read_csv(Path(__file__).parent / "data" / "sandpoint-1800.csv", demo_model().schema)[0]
    vmap, vframe = lattice.find_all(q[:1440], 16)
    assert not vmap[:, 3].any() and not vframe.any()


def test_a_resolution_that_was_coarse_and_is_fine_again_takes_no_lattice():
    """The CGM set's glucose: even readings only for its first third, then full resolution. Trained
    on rows that end fine, a lattice for the early stretch would code every later frame worse
    (4 % on the held-out half): the frames to come are in the latest regime."""
    fine_then_coarse = _resolution_change(4000, 4, fine_until=2500)[:, 0]
    coarse_then_fine = fine_then_coarse[::-1].copy()  # even readings for the first 1,500 rows
    assert np.all(coarse_then_fine[:1500] % 2 == 0) and np.mean(coarse_then_fine[1500:] % 2) > 0.4
    assert lattice.find_partial(coarse_then_fine, N) == lattice.IDENTITY
    # the same stretch at the end of the training rows is the sensor's current resolution: taken
    assert lattice.find_partial(fine_then_coarse, N)[:3] == (2, 0, 1)
