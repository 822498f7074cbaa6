"""Activity weights (bitstream revision 5, docs/codec.md "Samples"): a later sample's context from
its own last change and the residuals of the channels already coded at the same step; what older
models and files keep."""

from __future__ import annotations

import importlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, train
from gateway.codec.adapt import adapt
from gateway.codec.errors import CodecError
from gateway.codec.model import FINGERPRINT_TAG_4, FINGERPRINT_TAG_5, fingerprint_message
from gateway.codec.train import frames_of
from gateway.codec.weights import FORMAT_ACTW, from_bytes, to_bytes

from .conftest import burst_series, parity_series

train_module = importlib.import_module("gateway.codec.train")  # the package's `train` is the function
SCHEMA = Schema(tuple(Channel(f"ax{i}", "", 1.0) for i in range(3)))


@pytest.fixture(scope="module")
def trained() -> tuple[Model, np.ndarray]:
    x = burst_series(2400)
    return train(x[:1600], SCHEMA, 16, buckets=3), x[1600:]


def test_trainer_weighs_the_earlier_channels_residuals_and_stays_lossless(trained):
    model, test = trained
    assert np.tril(model.params.actw, -1)[1:].any(axis=1).all()  # both later channels use them
    frames = frames_of(test, 16)
    payloads = model.encode_many(frames)
    for frame, payload, batch in zip(frames, payloads, model.decode_each(payloads), strict=True):
        assert model.decode(payload).tolist() == frame.tolist() == batch.tolist()
    short = test[:2]  # no later sample: the weights are never read
    assert model.decode(model.encode(short)).tolist() == short.tolist()


def test_weights_code_the_held_out_data_in_fewer_bytes_than_revision_4(trained, monkeypatch):
    """The same series trained with the weights search switched off (revision 4's trainer) costs more."""
    model, test = trained
    frames = frames_of(test, 16)
    weighted = sum(map(len, model.encode_many(frames)))

    def identity(m, prev, resid, late, buckets):
        row = np.zeros(resid.shape[-1] + 1, dtype=np.int64)
        row[-1] = 1
        return row

    monkeypatch.setattr(train_module, "choose_actw", identity)
    plain = train(burst_series(2400)[:1600], SCHEMA, 16, buckets=3)
    assert (plain.params.actw == np.eye(3)).all()
    assert weighted < 0.98 * sum(map(len, plain.encode_many(frames)))


def test_weight_file_format_4_round_trips_and_hashes_as_revision_5(trained):
    model, test = trained
    again = from_bytes(to_bytes(model), "copy")
    assert again.meta["format"] == FORMAT_ACTW
    assert again.params.actw.tolist() == model.params.actw.tolist()
    assert again.fingerprint == model.fingerprint
    assert fingerprint_message(model).startswith(FINGERPRINT_TAG_5)
    frame = test[:16]
    assert again.decode(model.encode(frame)).tolist() == frame.tolist()
    off = Model(SCHEMA, replace(model.params, actw=np.eye(3, dtype=np.int64)), 16)
    assert off.fingerprint != model.fingerprint  # the weights are part of the bitstream


def test_models_with_identity_weights_keep_their_revision_4_file_and_fingerprint():
    x = parity_series(1500)
    schema = Schema(tuple(Channel(f"cgm{i}", "", 1.0) for i in range(2)))
    pm = train(x[:1100], schema, 16, buckets=2)
    assert pm.params.pmode.any() and (pm.params.actw == np.eye(2)).all()
    assert fingerprint_message(pm).startswith(FINGERPRINT_TAG_4)
    assert json.loads(bytes(np.load(io.BytesIO(to_bytes(pm)))["meta"]))["format"] == "lora-gw-codec/3"


def test_weights_on_a_later_channel_or_out_of_range_are_refused(trained):
    model, _ = trained
    for bad in (
        [[1, 5, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 0, 0], [-1, 1, 0], [0, 0, 1]],
        [[4096, 0, 0], [0, 1, 0], [0, 0, 1]],
    ):
        with pytest.raises(CodecError, match="activity weights"):
            Model(SCHEMA, replace(model.params, actw=np.array(bad)), 16)


def test_corrupted_payloads_agree_between_the_scalar_and_batch_decoders(trained):
    model, test = trained
    rng = np.random.default_rng(2)
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


def test_adaptation_chooses_the_weights_again_on_the_new_data_and_stays_lossless(trained):
    """Which channels move together belongs to the site: adapted to data where they still burst
    together the weights stay in use; adapted to channels that wander independently they go."""
    model, test = trained
    adapted = adapt(model, test)
    assert np.tril(adapted.params.actw, -1)[1:].any(axis=1).all()
    for frame in frames_of(test, 16)[:8]:
        assert adapted.decode(adapted.encode(frame)).tolist() == frame.tolist()
    rng = np.random.default_rng(5)
    apart = test[0] + np.cumsum(rng.integers(-40, 41, size=test.shape), axis=0)
    plain = adapt(model, apart)
    assert not np.tril(plain.params.actw, -1).any()
    for frame in frames_of(apart, 16)[:8]:
        assert plain.decode(plain.encode(frame)).tolist() == frame.tolist()
