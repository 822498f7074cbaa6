import io
import zipfile

import numpy as np
import pytest

from gateway.codec import load_weights, save_weights
from gateway.codec.errors import WeightsError
from gateway.codec.weights import from_bytes, to_bytes


def test_round_trip_keeps_weights_metadata_and_bits(tmp_path, model, series):
    path = tmp_path / "m.npz"
    size = save_weights(model, path)
    assert size == path.stat().st_size <= 4096
    back = load_weights(path)
    assert (back.model_id, back.version, back.samples_per_frame) == (3, 2, 16)
    assert back.schema == model.schema
    assert len(back.meta["sha256"]) == 64
    assert back.meta["created"].endswith("+00:00")
    assert back.meta["training"]["samples"] == len(series)
    assert "bytes_per_sample" in back.meta["metrics"]
    frame = series[:16]
    assert back.encode(frame) == model.encode(frame)


def test_shipped_demo_model_is_small_and_verified(demo):
    assert demo.meta["name"] == "weather-demo"
    assert len(to_bytes(demo)) <= 4096
    assert [c.name for c in demo.schema.channels][:2] == ["temperature", "humidity"]


def _rewrite(data: bytes, member: str, change) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            dst.writestr(info.filename, change(body) if info.filename == member else body)
    return out.getvalue()


def test_tampered_weights_fail_the_sha256_check(model):
    data = to_bytes(model)
    with np.load(io.BytesIO(data)) as npz:
        ints = npz["ints"].copy()
    ints[0] += 1
    buf = io.BytesIO()
    np.save(buf, ints)
    bad = _rewrite(data, "ints.npy", lambda _body: buf.getvalue())
    with pytest.raises(WeightsError, match="SHA-256"):
        from_bytes(bad, "bad.npz")


def test_pickled_arrays_are_refused(model):
    data = to_bytes(model)
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    bad = _rewrite(data, "meta.npy", lambda _body: buf.getvalue())
    with pytest.raises(WeightsError):
        from_bytes(bad, "pickle.npz")


@pytest.mark.parametrize("junk", [b"", b"not a zip", b"PK\x03\x04" + b"\x00" * 40])
def test_garbage_is_a_clear_error(junk):
    with pytest.raises(WeightsError, match="not a codec weight file"):
        from_bytes(junk, "junk.npz")


def test_any_flipped_byte_is_caught_or_harmless(model):
    data = to_bytes(model)
    sha = model.meta["sha256"]
    for pos in range(0, len(data), 3):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        try:
            back = from_bytes(bytes(bad), "flipped.npz")
        except WeightsError:
            continue
        assert back.meta["sha256"] == sha  # e.g. a zip timestamp: same weights
