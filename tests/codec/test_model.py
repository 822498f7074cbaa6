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
