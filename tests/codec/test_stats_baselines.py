import numpy as np

from gateway.codec import CodecStats, Schema
from gateway.codec.baselines import lpp_bytes_per_sample, sprintz_frame_bytes, varint_frame_bytes
from gateway.codec.train import frames_of


def test_live_stats_track_bytes_and_error_against_training(model, series):
    stats = CodecStats()
    frames = frames_of(series, 16)
    total = 0
    for f in frames:
        p = model.encode(f)
        total += len(p)
        stats.observe(model, p, model.decode(p))
    snap = stats.snapshot()["3@2"]
    assert snap["frames"] == len(frames) and snap["samples"] == 16 * len(frames)
    assert snap["bytes_per_sample"] == round(total / (16 * len(frames)), 4)
    assert set(snap["mean_abs_error"]) == set(model.schema.names)
    assert 0.5 < snap["error_ratio"] < 2.0  # same data it was trained on


def test_error_ratio_rises_when_the_data_no_longer_fits(model, series):
    stats = CodecStats()
    noisy = series + np.random.default_rng(1).integers(-80, 81, size=series.shape)
    for f in frames_of(noisy, 16):
        stats.observe(model, model.encode(f), f)
    assert stats.snapshot()["3@2"]["error_ratio"] > 3


def test_lpp_size_of_the_weather_schema_matches_the_reference_note(schema):
    assert lpp_bytes_per_sample(schema) == 19


def test_sprintz_size_by_hand():
    # 2 channels, 3 samples: 32 bits raw; deltas zigzag ch0: 2,4 (width 3), ch1: 0,1 (width 1)
    # -> 4+2*3 + 4+2*1 = 16 bits; 48 bits = 6 bytes.
    frame = np.array([[10, 5], [11, 5], [13, 4]])
    assert sprintz_frame_bytes(frame) == 6
    # varint: 4 raw bytes + 4 one-byte deltas
    assert varint_frame_bytes(frame) == 8
    glucose = Schema.from_toml('[[channel]]\nname="a"\nstep=1\n[[channel]]\nname="b"\nstep=1\n')
    assert lpp_bytes_per_sample(glucose) == 8
