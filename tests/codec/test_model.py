import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import Channel, Model, Schema, train
from gateway.codec.errors import CodecError, PayloadError
from gateway.codec.model import GRID_ONE
from gateway.codec.train import frames_of

from .conftest import grid_series


def test_every_frame_length_round_trips_losslessly(model, series):
    for n in (1, 2, 3, 7, 16, 17, 40, 64):
        frame = series[100 : 100 + n]
        payload = model.encode(frame)
        assert np.array_equal(model.decode(payload), frame), n


def test_batch_decode_of_mixed_lengths_matches_single_decodes(model, series):
    frames = [series[i : i + n] for i, n in ((0, 16), (16, 5), (21, 16), (37, 64), (101, 1))]
    payloads = [model.encode(f) for f in frames]
    decoded = model.decode_many(payloads)
    for f, d, p in zip(frames, decoded, payloads, strict=True):
        assert np.array_equal(d, f)
        assert np.array_equal(model.decode(p), f)


def test_outliers_and_extremes_stay_lossless(model, series):
    frame = series[:16].copy()
    frame[3, 0] += 40_000  # a spike far outside anything seen in training
    frame[9, 4] = -(2**30) + 1
    frame[10, 4] = 2**30 - 1
    payload = model.encode(frame)
    assert np.array_equal(model.decode(payload), frame)  # plain-int path
    (batch,) = model.decode_many([payload])  # numpy lanes, raw bits in several 16-bit chunks
    assert np.array_equal(batch, frame)


def test_compresses_its_own_kind_of_data_well_below_sprintz(model, series):
    from gateway.codec.baselines import sprintz_frame_bytes

    frames = frames_of(series, 16)
    ours = sum(len(p) for p in model.encode_many(frames))
    sprintz = sum(sprintz_frame_bytes(f) for f in frames)
    assert ours < 0.85 * sprintz


def test_lattice_data_learns_a_residual_grid_and_round_trips():
    x = grid_series()
    schema = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    m = train(x[:400], schema, 16, buckets=2)
    assert np.any(m.params.grid != GRID_ONE)
    frames = frames_of(x[400:], 16)
    assert all(
        np.array_equal(d, f) for d, f in zip(m.decode_many(m.encode_many(frames)), frames, strict=True)
    )


def test_first_symbol_carries_the_sample_count(model, series):
    full = model.encode(series[:16])
    short = model.encode(series[:15])
    assert model.decode(full).shape == (16, 5)
    assert model.decode(short).shape == (15, 5)


def test_decoding_someone_elses_payload_is_refused(model, series):
    with pytest.raises(PayloadError):
        model.decode(bytes(range(200)))
    with pytest.raises(PayloadError):
        model.decode_many([model.encode(series[:16]), bytes(range(200))])
    with pytest.raises(PayloadError):
        model.decode(model.encode(series[:16]) + b"\x01\x02\x03")  # trailing bytes nobody wrote


def test_bad_frames_are_refused(model, series):
    with pytest.raises(CodecError):
        model.encode(series[:65])
    with pytest.raises(CodecError):
        model.encode(series[:4, :3])
    with pytest.raises(CodecError):
        model.encode(np.zeros((0, 5), dtype=np.int64))


def test_generate_is_reproducible_and_within_bounds(demo):
    a = demo.generate(300, np.random.default_rng(11))
    b = demo.generate(300, np.random.default_rng(11))
    assert np.array_equal(a, b)
    p = demo.params
    assert np.all(a >= p.lo) and np.all(a <= p.hi)
    # a long run keeps roughly the training spread instead of wandering like a random walk
    temp = demo.values(a)[:, 0]
    assert -30 < temp.mean() < 45 and temp.std() > 0.5
    assert np.array_equal(demo.decode(demo.encode(a[:16])), a[:16])


def test_fill_gap_follows_the_predictor_and_meets_the_next_sample(demo, series):
    hist = series[:20]
    est = demo.fill_gap(hist, 6)
    assert est.shape == (6, 5)
    assert np.all(est >= demo.params.lo) and np.all(est <= demo.params.hi)
    after = series[26]
    bent = demo.fill_gap(hist, 6, after=after)
    # the last estimate sits between the free-running path and the known next sample
    lo = np.minimum(est[-1], after) - 1
    hi = np.maximum(est[-1], after) + 1
    assert np.all((bent[-1] >= lo) & (bent[-1] <= hi))
    assert demo.fill_gap(hist, 0).shape == (0, 5)
    with pytest.raises(CodecError):
        demo.fill_gap(np.zeros((0, 5)), 3)


def test_golden_vector_of_the_shipped_demo_model(demo):
    """Bits are the contract with node C code: this payload must never change silently."""
    q = demo.schema.quantise(
        np.array(
            [
                [21.5, 60, 1013, 3.2, 0],
                [21.3, 61, 1013, 3.0, 0],
                [21.0, 62, 1013, 3.4, 12],
                [20.8, 62, 1012, 2.9, 85],
            ]
        )
    )
    payload = demo.encode(q)
    assert payload.hex() == GOLDEN
    assert np.array_equal(demo.decode(bytes.fromhex(GOLDEN)), q)


GOLDEN = "fc3655cc4945b9d143dc7c42e485674bd26557"


def test_model_rejects_inconsistent_weights(model):
    with pytest.raises(CodecError):
        Model(model.schema, model.params, 65)
    with pytest.raises(CodecError):
        Model(model.schema, model.params, 16, model_id=16)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1, 30, 5000, 2**24]),
)
def test_any_frame_round_trips_on_both_decode_paths(model, n, seed, scale):
    rng = np.random.default_rng(seed)
    frame = np.cumsum(rng.integers(-scale, scale + 1, size=(n, 5)), axis=0)
    frame = np.clip(frame + rng.integers(-500, 500, size=5), -(2**30) + 1, 2**30 - 1)
    payload = model.encode(frame)
    assert np.array_equal(model.decode(payload), frame)
    assert np.array_equal(model.decode_many([payload, payload])[1], frame)


# -- bitstream revision 3: jitter tables by the lattice phase of the grid index ---------------------


def _lattice_series() -> np.ndarray:
    """Scaled ADC counts (a ~10.1 lattice) with a little analogue noise before rounding, like
    Daphnet: whether a reading lands on one integer or two depends on the lattice point's phase."""
    rng = np.random.default_rng(11)
    counts = np.cumsum(rng.integers(-6, 7, size=(900, 3)), axis=0)
    return np.rint(counts * 10.1 + rng.normal(0, 0.3, size=(900, 3))).astype(np.int64)


def _lattice_model():
    x = _lattice_series()
    schema = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    return train(x[:600], schema, 16, buckets=2), x[600:], schema


def test_grid_phase_is_a_floor_modulo_for_negative_indices():
    from gateway.codec.model import grid_phase

    m = np.arange(-700, 700, dtype=np.int64)
    for g in (300, 2585, 1 << 20):
        assert grid_phase(m, np.int64(g)).tolist() == [(v * g) % 256 // 64 for v in m.tolist()]


def test_phase_tables_save_bits_on_held_out_lattice_data():
    """The four jitter tables code held-out lattice data in fewer bytes than one shared table, and
    all three decoders agree (the shared table is exactly revision 2's bitstream)."""
    import dataclasses

    gm, test, schema = _lattice_model()
    p = gm.params
    assert np.any(p.jfreq != p.jfreq[:, :1])
    # One table per channel learned from the same training data, used for every phase.
    x = _lattice_series()[:600]
    frames = np.concatenate([frames_of(x[s:], 16) for s in range(0, 16, 4)])
    from gateway.codec.model import grid_split
    from gateway.codec.tables import quantise_freqs, to_symbols

    jf = p.jfreq.copy()
    res = gm.residuals(frames)
    for c in np.flatnonzero(p.grid != GRID_ONE):
        _, e = grid_split(res[:, :, c].ravel(), p.grid[c])
        jf[c] = quantise_freqs(np.bincount(to_symbols(e, 0)[0], minlength=64))
    single = Model(schema, dataclasses.replace(p, jfreq=jf), 16)
    held = frames_of(test, 16)
    phased_bytes = sum(map(len, gm.encode_many(held)))
    single_bytes = sum(map(len, single.encode_many(held)))
    assert phased_bytes < 0.97 * single_bytes, (phased_bytes, single_bytes)
    for m in (gm, single):
        payloads = m.encode_many(held)
        assert all(np.array_equal(a, b) for a, b in zip(m.decode_many(payloads), held, strict=True))
        assert all(np.array_equal(m.decode(pl), f) for pl, f in zip(payloads, held, strict=True))


def test_weight_formats_one_and_two_load(demo):
    """A model with phase tables is written as format 2 (four jitter tables per channel); one
    without keeps format 1 (the shipped demo), whose single table serves every phase."""
    import dataclasses

    from gateway.codec.weights import from_bytes, to_bytes

    trained, test, schema = _lattice_model()
    assert from_bytes(to_bytes(trained), "modes.npz").meta["format"] == "lora-gw-codec/3"  # revision 4
    gm = Model(schema, dataclasses.replace(trained.params, pmode=np.zeros(trained.params.channels, int)), 16)
    back = from_bytes(to_bytes(gm), "phased.npz")
    assert back.meta["format"] == "lora-gw-codec/2"
    assert np.array_equal(back.params.jfreq, gm.params.jfreq) and back.fingerprint == gm.fingerprint
    frame = test[:16]
    assert back.encode(frame) == gm.encode(frame)
    assert demo.meta["format"] == "lora-gw-codec/1"
    assert demo.params.jfreq.shape == (5, 4, 64) and np.all(demo.params.jfreq == demo.params.jfreq[:, :1])
    assert from_bytes(to_bytes(demo), "demo.npz").meta["format"] == "lora-gw-codec/1"


def test_format_two_file_with_format_one_tables_is_refused(demo):
    """Format 2 promises four jitter tables per channel: a file that holds one is refused clearly."""
    import io
    import json

    from gateway.codec.errors import WeightsError
    from gateway.codec.weights import _digest, from_bytes, to_bytes

    with np.load(io.BytesIO(to_bytes(demo))) as npz:
        ints, freq, raw = npz["ints"], npz["freq"], npz["meta"]
    meta = json.loads(raw.tobytes().decode())
    meta["format"] = "lora-gw-codec/2"
    meta["sha256"] = _digest(ints, freq, meta)
    buf = io.BytesIO()
    np.savez_compressed(buf, ints=ints, freq=freq, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(WeightsError, match="array sizes do not match"):
        from_bytes(buf.getvalue(), "odd.npz")
    meta["format"] = "lora-gw-codec/9"
    meta["sha256"] = _digest(ints, freq, meta)
    buf = io.BytesIO()
    np.savez_compressed(buf, ints=ints, freq=freq, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(WeightsError, match="unknown weight format"):
        from_bytes(buf.getvalue(), "future.npz")


def test_breakdown_accounts_for_the_payload_bits(model, series):
    """bench/codec_breakdown.py's per-symbol accounting (tables, raw bits, phase-chosen jitter) is
    what the coder spends: each frame's payload is within the range coder's termination of it."""
    from bench.codec_breakdown import coded_bits
    from gateway.codec.rangecoder import PROB_TOTAL

    gm, test, _ = _lattice_model()
    for m, frames in ((gm, frames_of(test, 16)), (model, frames_of(series, 16))):
        bits = coded_bits(m, frames)
        per_frame = sum(v.sum(axis=(1, 2)) for v in bits.values()) - np.log2((PROB_TOTAL - 64) / PROB_TOTAL)
        sizes = np.array([8 * len(p) for p in m.encode_many(frames)])
        gap = sizes - per_frame  # termination: up to 2 bytes; dropped trailing zeros can save a few bits
        assert gap.min() >= -8 and gap.max() <= 17 and 0 <= gap.mean() <= 12, (gap.min(), gap.mean())


def test_adapting_a_phased_lattice_model_keeps_per_phase_jitter_tables():
    """Incremental training (gateway.codec.adapt) updates each phase's jitter table; the adapted
    model stays lossless and the per-channel bit split accounts for the phase-chosen tables."""
    from gateway.codec.adapt import adapt, channel_bits

    gm, test, _ = _lattice_model()
    new = adapt(gm, test)
    assert new.params.jfreq.shape == gm.params.jfreq.shape
    assert np.any(new.params.jfreq != new.params.jfreq[:, :1])
    frames = frames_of(test, 16)
    payloads = new.encode_many(frames)
    assert all(np.array_equal(a, b) for a, b in zip(new.decode_many(payloads), frames, strict=True))
    spent = 8 * sum(map(len, payloads))
    assert 0 <= spent - channel_bits(new, frames).sum() <= 17 * len(frames)
