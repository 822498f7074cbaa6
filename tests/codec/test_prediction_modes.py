"""Prediction modes (bitstream revision 4, docs/codec.md "Prediction modes"): snapped changes and
the jitter table by the predicted value's lattice phase; what older models and files keep."""

from __future__ import annotations

import importlib
import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, train
from gateway.codec.adapt import adapt
from gateway.codec.errors import CodecError, WeightsError
from gateway.codec.model import FINGERPRINT_TAG_4, fingerprint_message
from gateway.codec.train import frames_of
from gateway.codec.weights import FORMAT_PMODE, from_bytes, to_bytes

from .conftest import grid_series, parity_series

train_module = importlib.import_module("gateway.codec.train")  # the package's `train` is the function
SCHEMA = Schema(tuple(Channel(f"cgm{i}", "", 1.0) for i in range(2)))


@pytest.fixture(scope="module")
def trained() -> tuple[Model, np.ndarray]:
    x = parity_series(3000)
    return train(x[:2400], SCHEMA, 16, buckets=3), x[2400:]


def test_trainer_picks_a_mode_on_mostly_even_readings_and_stays_lossless(trained):
    model, test = trained
    assert model.params.pmode.any() and (model.params.grid[model.params.pmode != 0] != 256).all()
    frames = frames_of(test, 16)
    payloads = model.encode_many(frames)
    for frame, payload, batch in zip(frames, payloads, model.decode_each(payloads), strict=True):
        assert model.decode(payload).tolist() == frame.tolist() == batch.tolist()
    short = test[:5]  # a short frame takes the sample-count escape
    assert model.decode(model.encode(short)).tolist() == short.tolist()


def test_modes_code_the_held_out_data_in_fewer_bytes_than_revision_3(trained, monkeypatch):
    """The same series trained with the mode search switched off (revision 3's trainer) costs more."""
    model, test = trained
    frames = frames_of(test, 16)
    with_modes = sum(map(len, model.encode_many(frames)))

    def no_modes(frames, fd, first, late, ch, row, grid, *_rest):
        return row[0], row[1], int(row[2]), grid, 0

    monkeypatch.setattr(train_module, "choose_pmode", no_modes)
    plain = train(parity_series(3000)[:2400], SCHEMA, 16, buckets=3)
    assert not plain.params.pmode.any()
    assert with_modes < 0.97 * sum(map(len, plain.encode_many(frames)))


def test_weight_file_format_3_round_trips_and_hashes_as_revision_4(trained):
    model, test = trained
    again = from_bytes(to_bytes(model), "copy")
    assert again.meta["format"] == FORMAT_PMODE
    assert again.params.pmode.tolist() == model.params.pmode.tolist()
    assert again.fingerprint == model.fingerprint
    assert fingerprint_message(model).startswith(FINGERPRINT_TAG_4)
    frame = test[:16]
    assert again.decode(model.encode(frame)).tolist() == frame.tolist()
    off = Model(SCHEMA, replace(model.params, pmode=np.zeros(2, dtype=np.int64)), 16)
    assert off.fingerprint != model.fingerprint  # the modes are part of the bitstream


def test_models_without_modes_keep_their_revision_3_file_and_fingerprint():
    x = grid_series()
    schema = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    gm = train(x[:400], schema, 16, buckets=2)
    plain = Model(schema, replace(gm.params, pmode=np.zeros(3, dtype=np.int64)), 16)
    assert fingerprint_message(plain).startswith(b"lora-gw codec bitstream 3\x00")
    assert json.loads(bytes(np.load(io.BytesIO(to_bytes(plain)))["meta"]))["format"] == "lora-gw-codec/2"


def test_a_newer_weight_format_is_refused_in_one_clear_line(trained):
    model, _ = trained
    data = to_bytes(model)
    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(bytes(arrays["meta"]))
    meta["format"] = "lora-gw-codec/9"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with pytest.raises(WeightsError, match=r"unknown weight format 'lora-gw-codec/9'.*newer gateway"):
        from_bytes(buf.getvalue(), "m.npz")
    assert zipfile.is_zipfile(io.BytesIO(buf.getvalue()))


def test_a_mode_without_grid_or_out_of_range_is_refused(trained):
    model, _ = trained
    p = model.params
    for pmode in ([4, 0], [1, 1] if (p.grid == 256).any() else [-1, 0]):
        grid = np.where(np.arange(2) == 1, 256, p.grid) if pmode == [1, 1] else p.grid
        with pytest.raises(CodecError, match="prediction mode"):
            Model(SCHEMA, replace(p, grid=grid, pmode=np.array(pmode)), 16)


def test_corrupted_payloads_agree_between_the_scalar_and_batch_decoders(trained):
    model, test = trained
    rng = np.random.default_rng(1)
    payloads = []
    for frame in frames_of(test, 16)[:20]:
        p = bytearray(model.encode(frame))
        p[rng.integers(len(p))] ^= 1 << int(rng.integers(8))
        payloads.append(bytes(p))
    for payload, batch in zip(payloads, model.decode_each(payloads), strict=True):
        try:
            single = model.decode(payload).tolist()
        except CodecError:
            single = None
        assert single == (None if isinstance(batch, CodecError) else batch.tolist())


def test_adaptation_keeps_the_modes_and_stays_lossless(trained):
    model, test = trained
    adapted = adapt(model, test)
    assert adapted.params.pmode.tolist() == model.params.pmode.tolist()
    for frame in frames_of(test, 16)[:8]:
        assert adapted.decode(adapted.encode(frame)).tolist() == frame.tolist()
