"""Issue 11 item 3 end to end: frames bound to their model through a real model store.

Under another model with the same id and version mod 8 (or another samples-per-frame) a frame used
to decode to wrong values; now its CRC/MIC fails and it is refused, and with the right model
installed beside it the gateway picks the version whose check passes."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.codec import Model, save_weights, train
from gateway.codec.train import frames_of
from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node
from gateway.pipeline.models import InstalledModels

KEY = bytes(range(16))


@pytest.fixture(scope="module")
def rivals(model, series, schema) -> tuple[Model, Model]:
    """Same id (3), versions ≡ 2 mod 8: other weights (v10), other samples per frame (v18)."""
    other = train(series[::-1].copy(), schema, 16, buckets=2, model_id=3, version=10)
    return other, Model(model.schema, model.params, 8, 3, 18)


def _install(tmp_path, *models: Model) -> InstalledModels:
    from gateway.codec import ModelStore

    store = ModelStore(tmp_path)
    for m in models:
        path = tmp_path / f"src-{m.version}.npz"
        save_weights(m, path)
        store.install(path)
    return InstalledModels(tmp_path, ttl_s=0.0)


@pytest.mark.parametrize("key", [None, KEY], ids=["open", "secured"])
def test_wrong_model_frames_are_refused_never_silently_wrong(tmp_path, model, rivals, series, key):
    installed = _install(tmp_path, *rivals)
    assert [v for v, _ in installed.candidates(3, 2)] == [18, 10]
    decoder = FrameDecoder([Node(7, "n", key=key)], models=installed.candidates)
    enc = FrameEncoder(7, key)
    frames = frames_of(series, 16)[:24]
    reasons = set()
    for f in frames:
        with pytest.raises(FrameError) as err:
            decoder.decode(enc.encode_model(model, f))
        reasons.add(err.value.reason)
        assert "v18, v10" in err.value.message
    assert reasons == {"model_mismatch"}
    # Without the binding these payloads would mostly decode, wrongly, under the rivals.
    wrong = 0
    for f in frames:
        for rival in rivals:
            out = rival.decode_each([model.encode(f)])[0]
            wrong += not isinstance(out, Exception) and not np.array_equal(out, f)
    assert wrong > 0


def test_the_version_whose_check_passes_decodes_the_frame(tmp_path, model, rivals, series):
    installed = _install(tmp_path, model, *rivals)
    assert [v for v, _ in installed.candidates(3, 2)] == [18, 10, 2]  # newest first
    decoder = FrameDecoder([Node(7, "n")], models=installed.candidates)
    enc = FrameEncoder(7)
    for f in frames_of(series, 16)[:10]:
        frame = decoder.decode(enc.encode_model(model, f))
        decoder.accept(frame)
        assert frame.model_version == 2
        assert np.array_equal(installed.model(3, frame.model_version).decode(frame.payload), f)
    short = rivals[1]
    frame = decoder.decode(enc.encode_model(short, series[:8]))
    assert frame.model_version == 18 and installed.model(3, 18).samples_per_frame == 8
