"""Issue 11 item 2: corrupted payloads give a PayloadError, never a crash, and one bad frame in a
batch costs only itself; the decoders refuse impossible coder states and cut-short payloads."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, train
from gateway.codec.errors import PayloadError
from gateway.codec.train import frames_of

from .conftest import grid_series


def _flips(payload: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        b = bytearray(payload)
        i = int(rng.integers(len(b) * 8))
        b[i // 8] ^= 1 << (i % 8)
        out.append(bytes(b))
    return out


def _scalar(model, payload: bytes) -> np.ndarray | None:
    try:
        return model.decode(payload)
    except PayloadError:
        return None


@pytest.mark.parametrize("which", ["model", "demo"])
def test_flipped_bits_never_crash_either_decoder_and_both_agree(request, series, which):
    model = request.getfixturevalue(which)
    data = model.generate(16 * 60, np.random.default_rng(2)) if which == "demo" else series
    payloads = model.encode_many(frames_of(data, 16)[:60])
    rng = np.random.default_rng(9)
    mutated = [m for p in payloads for m in _flips(p, rng, 12)]
    for m in mutated:  # the strict batch call: a PayloadError or samples, never IndexError/overflow
        with contextlib.suppress(PayloadError):
            model.decode_many([m])
    each = model.decode_each(mutated)
    refused = 0
    for m, lane in zip(mutated, each, strict=True):
        one = _scalar(model, m)
        if isinstance(lane, PayloadError):
            refused += 1
            assert one is None
        else:
            assert one is not None and np.array_equal(one, lane)
    assert refused > len(mutated) // 2  # most flips are caught by the codec alone (the CRC does the rest)


def test_one_bad_frame_does_not_cost_the_batch(model, series):
    frames = frames_of(series, 16)[:6]
    payloads = model.encode_many(frames)
    batch = [payloads[0], b"\xff" * 40, payloads[1], payloads[2][:-3], "not bytes", payloads[3]]
    out = model.decode_each(batch)  # type: ignore[arg-type]
    assert [isinstance(o, PayloadError) for o in out] == [False, True, False, True, True, False]
    for got, want in zip([out[0], out[2], out[5]], [frames[0], frames[1], frames[3]], strict=True):
        assert np.array_equal(got, want)
    with pytest.raises(PayloadError, match="payload 1"):
        model.decode_many(batch[:3])


def test_impossible_state_is_refused(model, demo):
    """code ≥ range from the first four bytes on: no encoder writes that. The old decoders clamped
    it and went on; the batch one overflowed int64 and raised IndexError on this payload."""
    payload = b"\xff" * 6
    with pytest.raises(PayloadError, match="impossible"):
        model.decode(payload)
    assert isinstance(model.decode_each([payload])[0], PayloadError)
    crashed = bytes.fromhex(
        "ffffffff7d723501c3e8cbae1d1da139ff7bf0d1e7c9e3e92ff4b66d045efcf466853ac2b19f5a53cf13e4e0"
    )
    with pytest.raises(PayloadError):
        demo.decode_many([crashed])
    with pytest.raises(PayloadError):
        demo.decode(crashed)


def test_cut_short_payloads_are_refused(model, series):
    """A decoder that consumed more bytes than the payload holds says so (the encoder never trims
    below the bytes it emitted): every cut of three or more bytes is caught here."""
    payloads = model.encode_many(frames_of(series, 16)[:20])
    cuts = [p[:-k] for p in payloads for k in (3, 5, 8) if len(p) > k]
    assert all(isinstance(o, PayloadError) for o in model.decode_each(cuts))
    assert all(_scalar(model, c) is None for c in cuts)


def _grid_model() -> tuple[Model, np.ndarray]:
    x = grid_series()
    gm = train(x[:400], Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3))), 16, buckets=3)
    assert (gm.params.grid != 256).any()  # the jitter path is in use
    return gm, x[400:]


def _frame_flag_model() -> tuple[Model, np.ndarray]:
    """Revision 7: a drifting reading at full resolution, then at half (even readings only)."""
    rng = np.random.default_rng(6)
    walk = 500 + np.cumsum(rng.normal(0, 5, 1400))
    x = np.rint(walk).astype(np.int64)
    x[300:] = 2 * np.floor(walk[300:] / 2).astype(np.int64)
    fm = train(x[:600, None], Schema((Channel("current", "nA", 0.01),)), 16, buckets=2)
    assert fm.params.vframe.any()  # the frame flag path is in use
    return fm, np.concatenate([x[800:900], x[200:400], x[900:]])[:, None]  # coarse, fine, coarse


@pytest.mark.parametrize("which", ["model", "demo", "grid", "frame_flags"])
def test_scalar_decoder_refuses_and_accepts_exactly_what_the_batch_decoder_does(request, series, which):
    """The per-packet decoder stops at the first sample whose symbols already need more bytes than
    the payload holds; the batch decoder runs every lane to the end. Every prefix of real payloads
    (cut short anywhere, windowed first-sample and jitter tables included) and random bytes must
    get the same verdict and the same samples from both."""
    if which == "grid":
        model, data = _grid_model()
    elif which == "frame_flags":
        model, data = _frame_flag_model()
    else:
        model = request.getfixturevalue(which)
        data = model.generate(400, np.random.default_rng(4)) if which == "demo" else series
    frames = [data[i : i + n] for i, n in ((0, 16), (20, 1), (40, 5), (80, 64))]
    # A sensor that does not move: likely symbols consume no byte in the last samples and the
    # payload ends on zero bytes emitted while coding, so it holds exactly the bytes consumed.
    frames += [np.tile(data[0], (16, 1)) + v for v in range(-3, 4)]
    payloads = [model.encode(f) for f in frames]
    for p, f in zip(payloads, frames, strict=True):
        assert np.array_equal(model.decode(p), f)
    rng = np.random.default_rng(11)
    inputs = [p[:k] for p in payloads for k in range(len(p) + 1)]
    inputs += [bytes(rng.integers(0, 256, size=int(rng.integers(0, 48)), dtype=np.uint8)) for _ in range(300)]
    inputs += [b"\xfc" + p[1:] for p in payloads]  # another sample count, same body
    each = model.decode_each(inputs)
    accepted = 0
    for data_in, lane in zip(inputs, each, strict=True):
        one = _scalar(model, data_in)
        if isinstance(lane, PayloadError):
            assert one is None, data_in.hex()
        else:
            accepted += 1
            assert one is not None and np.array_equal(one, lane), data_in.hex()
    assert accepted >= len(payloads)  # the whole payloads at least (trailing-zero cuts decode too)
