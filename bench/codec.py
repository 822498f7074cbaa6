"""Codec benchmark: bytes per sample and speed of the learned model beside the baselines.

Data (the ``bench`` extra): Greensboro TMY3 weather (pvlib), CGM glucose (bokeh-sampledata),
Daphnet accelerometers (aeon), and the CGM sensor current alone (``isig``, a drifting single
channel). For 8, 16 and 32 samples per frame: train on the first half, evaluate on the second,
every frame on its own. Baselines: raw int16, Cayenne LPP, zstd level 19 with a 2 KB dictionary
trained on the first half (frames as first sample + deltas, channel-major int16, no
checksum/size/dictionary id in the zstd frame), delta + zigzag + varint, Sprintz-style bit packing,
a plain per-frame Rice coder, the ideal static order-0 entropy of deltas (first sample raw at 16
bits per channel) and the stricter order-0 bound (first sample at its own order-0 cost).
``--mutations N`` adds the mutation run (flipped bits, truncations, wrong models; crashes,
silently wrong, detected) on N test frames per data set and size, at the codec and frame level.

    python bench/codec.py [--json] [--sizes 8,16,32] [--datasets greensboro,glucose,daphnet,isig,sst]
                          [--mutations 200] [--regime]

``--regime`` (issue 18) adds ``regime_change``: a model trained on a year at one site (Greensboro NC,
Sand Point AK: the two TMY3 years pvlib ships), then two months of the other site's data: the stale
model, the stale model adapted to them and one trained from scratch on them, judged on the month after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from gateway.codec import Channel, Schema, train_to_size
from gateway.codec.baselines import lpp_bytes_per_sample, sprintz_frame_bytes, varint_frame_bytes
from gateway.codec.train import frames_of
from gateway.codec.weights import bitstream_bytes
from gateway.frames.types import PayloadCodec


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def greensboro() -> tuple[Schema, np.ndarray]:
    import pvlib

    path = os.path.join(os.path.dirname(pvlib.__file__), "data", "723170TYA.CSV")
    df, _ = pvlib.iotools.read_tmy3(path, map_variables=True)
    chans = (
        Channel("temp_air", "°C", 0.1, device_class="temperature"),
        Channel("relative_humidity", "%", 1.0, device_class="humidity"),
        Channel("pressure", "hPa", 1.0, device_class="atmospheric_pressure"),
        Channel("wind_speed", "m/s", 0.1, device_class="wind_speed"),
        Channel("ghi", "W/m²", 1.0, device_class="illuminance"),
    )
    schema = Schema(chans)
    return schema, schema.quantise(df[[c.name for c in chans]].to_numpy(dtype=np.float64))


def glucose() -> tuple[Schema, np.ndarray]:
    import pandas as pd
    from bokeh_sampledata.glucose import data

    isig = pd.to_numeric(data["isig"], errors="coerce").ffill().bfill()
    schema = Schema((Channel("isig", "nA", 0.01), Channel("glucose", "mg/dL", 1.0)))
    vals = np.stack([isig.to_numpy(dtype=np.float64), data["glucose"].to_numpy(dtype=np.float64)], axis=1)
    return schema, schema.quantise(vals)


def daphnet() -> tuple[Schema, np.ndarray]:
    import aeon
    import pandas as pd

    path = os.path.join(
        os.path.dirname(aeon.__file__), "datasets", "data", "Daphnet_S06R02E0", "S06R02E0.csv"
    )
    df = pd.read_csv(path)
    cols = [c for c in df.columns if c not in ("timestamp", "is_anomaly")]
    schema = Schema(tuple(Channel(c, "mg", 1.0, device_class="accelerometer") for c in cols))
    return schema, schema.quantise(df[cols].to_numpy(dtype=np.float64))


def isig() -> tuple[Schema, np.ndarray]:
    """The drifting single-channel case: the CGM sensor current alone at 0.01 nA (the stored data
    hold no sea temperature series; this one drifts slowly with small noisy steps in the same way)."""
    schema, q = glucose()
    return Schema(schema.channels[:1]), q[:, :1]


def sst() -> tuple[Schema, np.ndarray]:
    """The issue's own drifting case: sea surface temperature at 0.01 °C, every 30 minutes for 13
    months (NERACOOS buoy B01, Western Maine Shelf, 19,226 readings; bokeh-sampledata ships it)."""
    from bokeh_sampledata.sea_surface_temperature import sea_surface_temperature as df

    schema = Schema((Channel("temperature", "°C", 0.01, device_class="temperature"),))
    return schema, schema.quantise(df[["temperature"]].to_numpy(dtype=np.float64))


DATASETS: dict[str, Callable[[], tuple[Schema, np.ndarray]]] = {
    "greensboro": greensboro,
    "glucose": glucose,
    "daphnet": daphnet,
    "isig": isig,
    "sst": sst,
}


def _zstd_layout(frame: np.ndarray) -> bytes:
    """First sample then deltas, channel-major int16: the best of the layouts tried for zstd."""
    g = frame.copy()
    g[1:] = np.diff(frame, axis=0)
    return g.T.astype("<i2").tobytes()


def zstd_bytes(train_frames: np.ndarray, test_frames: np.ndarray) -> int:
    import zstandard

    dictionary = zstandard.train_dictionary(2048, [_zstd_layout(f) for f in train_frames], level=19)
    cctx = zstandard.ZstdCompressor(
        level=19, dict_data=dictionary, write_checksum=False, write_content_size=False, write_dict_id=False
    )
    return sum(len(cctx.compress(_zstd_layout(f))) for f in test_frames)


def entropy_bytes(train: np.ndarray, test_frames: np.ndarray) -> float:
    """Ideal static order-0 coder of deltas learned on the training half (+ raw first sample)."""
    bits = 0.0
    d_train = np.diff(train, axis=0)
    d_test = np.diff(test_frames, axis=1)
    for c in range(train.shape[1]):
        vals, counts = np.unique(d_train[:, c], return_counts=True)
        prob = dict(zip(vals.tolist(), (counts / counts.sum()).tolist(), strict=True))
        floor = 0.5 / counts.sum()
        bits += sum(-np.log2(prob.get(v, floor)) for v in d_test[:, :, c].ravel().tolist())
    return bits / 8 + 2 * train.shape[1] * len(test_frames)


def order0_bound_bytes(train: np.ndarray, test_frames: np.ndarray, first_only: bool = False) -> float:
    """The ideal static order-0 bound of a per-frame coder (the issue's "ideal static order-0
    cross-entropy of first differences"): each channel's first sample under the training half's
    histogram of frame-start values, every later sample under the training half's first-difference
    histogram (cross-entropy on the test half, unseen values at half a count); no termination, no
    table cost. The half count is not a normalised distribution (every unseen value gets it), so
    the bound is a little stricter than any real order-0 coder; ``first_only``: the first-sample
    term alone."""

    def xent(train_vals: np.ndarray, test_vals: np.ndarray) -> float:
        vals, counts = np.unique(train_vals, return_counts=True)
        prob = dict(zip(vals.tolist(), (counts / counts.sum()).tolist(), strict=True))
        floor = 0.5 / counts.sum()
        return float(sum(-np.log2(prob.get(v, floor)) for v in test_vals.tolist()))

    n = test_frames.shape[1]
    starts = frames_of(train, n)[:, 0] if len(train) >= n else train[:1]
    bits = 0.0
    for c in range(train.shape[1]):
        bits += xent(starts[:, c], test_frames[:, 0, c])
        if not first_only:
            bits += xent(np.diff(train[:, c]), np.diff(test_frames[:, :, c], axis=1).ravel())
    return bits / 8


def rice_frame_bytes(frame: np.ndarray) -> int:
    """A plain per-frame Rice coder: first sample raw (16 bits per channel), then per channel a
    4-bit parameter k and the zigzagged deltas Rice-coded with the best k for this frame."""
    bits = 16 * frame.shape[1]
    d = np.diff(frame, axis=0)
    z = np.where(d >= 0, 2 * d, -2 * d - 1)
    for c in range(frame.shape[1]):
        bits += 4 + min(int((z[:, c] >> k).sum()) + len(z) * (k + 1) for k in range(16))
    return -(-bits // 8)


# -- mutation run (issue 11): corrupted payloads and frames, and frames under the wrong model ---------


def _tally() -> dict[str, int]:
    return {"inputs": 0, "crashes": 0, "silently_wrong": 0, "detected": 0, "unchanged": 0}


def _judge(tally: dict[str, int], decode: Callable[[], np.ndarray | None], truth: np.ndarray) -> None:
    """One input: ``decode`` returns samples, None when refused, or raises (a crash unless ours)."""
    from gateway.errors import GatewayError

    tally["inputs"] += 1
    try:
        got = decode()
    except GatewayError:
        got = None
    except Exception:  # anything else leaving a decoder is a crash
        tally["crashes"] += 1
        return
    if got is None:
        tally["detected"] += 1
    elif np.array_equal(got, truth):
        tally["unchanged"] += 1
    else:
        tally["silently_wrong"] += 1


def _mutations(rng: np.random.Generator, data: bytes) -> list[bytes]:
    """Two single-bit flips and cuts of 1, 2 and 3 bytes."""
    out = []
    for _ in range(2):
        b = bytearray(data)
        i = int(rng.integers(len(b) * 8))
        b[i // 8] ^= 1 << (i % 8)
        out.append(bytes(b))
    out += [data[:-cut] for cut in (1, 2, 3) if len(data) > cut]
    return out


def mutation_run(model, wrong: list, frames: np.ndarray, limit: int, seed: int = 11) -> dict[str, object]:
    """Codec level (payload alone: both decoders) and frame level (open frame, CRC bound to the
    model): flipped bits and truncations; and every frame under ``wrong`` models, each installed as
    the same id with a version ≡ the right one mod 8 (wrong samples-per-frame or other weights)."""
    from gateway.frames import FrameDecoder, FrameEncoder, Node
    from gateway.frames.errors import FrameError

    rng = np.random.default_rng(seed)
    frames = frames[:limit]
    payloads = model.encode_many(frames)
    codec = {"flipped_or_cut": _tally(), "wrong_model": _tally()}
    frame = {"flipped_or_cut": _tally(), "wrong_model": _tally()}

    def scalar(m, p: bytes) -> np.ndarray:
        return m.decode(p)

    def batch(m, ps: list[bytes]) -> list:
        return m.decode_each(ps)

    for p, truth in zip(payloads, frames, strict=True):
        muts = _mutations(rng, p)
        lanes = batch(model, muts)
        for q, lane in zip(muts, lanes, strict=True):
            _judge(codec["flipped_or_cut"], lambda q=q: scalar(model, q), truth)
            lane_out = None if isinstance(lane, Exception) else lane
            _judge(codec["flipped_or_cut"], lambda lane_out=lane_out: lane_out, truth)
        for w in wrong:
            _judge(codec["wrong_model"], lambda w=w, p=p: scalar(w, p), truth)

    nodes = [Node(7, "bench")]
    installed = {model.version: model}
    right = FrameDecoder(nodes, models=lambda mid, v8: [(model.version, model.fingerprint)])

    def through(decoder: FrameDecoder, models: dict, data: bytes) -> np.ndarray | None:
        try:
            f = decoder.inspect(data)[0]
        except FrameError:
            return None
        return models[f.model_version].decode(f.payload)

    enc = FrameEncoder(7)
    too_long = 0
    for p, truth in zip(payloads, frames, strict=True):
        if len(p) + 8 > 255:  # does not fit one LoRa packet (9 channels × 32 samples)
            too_long += 1
            continue
        data = enc.encode(p, codec=PayloadCodec.MODEL, model_id=model.model_id, model_version=model.version,
                          fingerprint=model.fingerprint)  # fmt: skip
        for q in _mutations(rng, data):
            _judge(frame["flipped_or_cut"], lambda q=q: through(right, installed, q), truth)
        for i, w in enumerate(wrong):
            version = model.version + 8 * (i + 1)
            dec = FrameDecoder(nodes, models=lambda mid, v8, w=w, version=version: [(version, w.fingerprint)])
            wrong_installed = {version: w}
            _judge(frame["wrong_model"], lambda dec=dec, m=wrong_installed, d=data: through(dec, m, d), truth)
    frame["payloads_too_long_for_a_frame"] = too_long  # type: ignore[assignment]
    return {"codec_level": codec, "frame_level": frame}


def _rate(fn: Callable[[], object], count: int, min_s: float = 0.5) -> float:
    """Items per second of fn (which handles `count` items), repeated for at least min_s."""
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return reps * count / elapsed


def run_one(name: str, schema: Schema, q: np.ndarray, n: int, mutations: int = 0) -> dict[str, object]:
    half = len(q) // 2
    train_q, test_q = q[:half], q[half:]
    t0 = time.perf_counter()
    model, weight_bytes = train_to_size(train_q, schema, n, max_bytes=4096)
    train_s = time.perf_counter() - t0
    frames = frames_of(test_q, n)
    samples = frames.shape[0] * n
    payloads = model.encode_many(frames)
    decoded = model.decode_many(payloads)
    lossless = all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))
    ours = sum(map(len, payloads)) / samples
    sprintz = sum(sprintz_frame_bytes(f) for f in frames) / samples
    bound = order0_bound_bytes(train_q, frames) / samples
    rice = sum(rice_frame_bytes(f) for f in frames) / samples
    batch = (payloads * (8192 // len(payloads) + 1))[:8192]
    one = payloads[: min(200, len(payloads))]
    result = {
        "dataset": name,
        "channels": len(schema),
        "samples_per_frame": n,
        "test_frames": len(frames),
        "bytes_per_sample": round(ours, 3),
        "lossless": lossless,
        "vs_sprintz_pct": round(100 * (ours / sprintz - 1), 1),
        "order0_bound_bytes_per_sample": round(bound, 3),
        "vs_order0_bound_pct": round(100 * (ours / bound - 1), 1),
        "order0_bound_first_sample_bytes_per_sample": round(
            order0_bound_bytes(train_q, frames, first_only=True) / samples, 3
        ),
        "rice_bytes_per_sample": round(rice, 3),
        "vs_rice_pct": round(100 * (ours / rice - 1), 1),
        "raw_int16_bytes_per_sample": 2 * len(schema),
        "lpp_bytes_per_sample": lpp_bytes_per_sample(schema),
        "zstd19_dict2k_bytes_per_sample": round(zstd_bytes(frames_of(train_q, n), frames) / samples, 3),
        "varint_bytes_per_sample": round(sum(varint_frame_bytes(f) for f in frames) / samples, 3),
        "sprintz_bytes_per_sample": round(sprintz, 3),
        "ideal_order0_delta_bytes_per_sample": round(entropy_bytes(train_q, frames) / samples, 3),
        "weight_file_bytes": len(weight_bytes),
        "bitstream_bytes": bitstream_bytes(model),  # the part a node holds (the rest: generation)
        "activity_buckets": model.params.buckets,
        "grid_channels": int((model.params.grid != 256).sum()),
        "lattice_channels": int((model.params.vmap[:, 3] != 0).sum()),
        "frame_flag_channels": int((model.params.vframe != 0).sum()),  # type: ignore[union-attr]
        # The same bound on the lattice indices (revision 6) instead of the readings: what an ideal
        # order-0 coder of first differences would reach if it knew the sensor's lattice too.
        "order0_bound_on_lattice_indices_bytes_per_sample": round(
            order0_bound_bytes(model.to_index(train_q)[0], model.to_index(frames)[0]) / samples, 3
        ),
        "train_s": round(train_s, 2),
        "encode_frames_per_s": round(_rate(lambda: model.encode_many(frames), len(frames))),
        "decode_batch_frames_per_s": round(_rate(lambda: model.decode_many(batch), len(batch))),
        "decode_single_frames_per_s": round(_rate(lambda: [model.decode(p) for p in one], len(one))),
    }
    if mutations:
        # Wrong models with the same id and version mod 8: one trained on the other half, one at
        # another samples-per-frame.
        other_half, _ = train_to_size(test_q, schema, n, max_bytes=4096)
        other_size, _ = train_to_size(train_q, schema, 8 if n != 8 else 16, max_bytes=4096)
        result["mutations"] = mutation_run(model, [other_half, other_size], frames, mutations)
    _say(
        f"{name} N={n}: {result['bytes_per_sample']} B/sample ({result['vs_sprintz_pct']} % vs Sprintz-style,"
        f" {result['vs_order0_bound_pct']} % vs the order-0 bound)"
    )
    return result


def sand_point() -> tuple[Schema, np.ndarray]:
    """Sand Point, Alaska: the other TMY3 year pvlib ships, in Greensboro's channels and steps."""
    import pvlib

    schema, _ = greensboro()
    path = os.path.join(os.path.dirname(pvlib.__file__), "data", "703165TY.csv")
    df, _ = pvlib.iotools.read_tmy3(path, map_variables=True)
    return schema, schema.quantise(df[[c.name for c in schema.channels]].to_numpy(dtype=np.float64))


def regime_change(sizes: list[int], months: int = 2) -> list[dict[str, object]]:
    """Issue 18: a model trained on a year at one site, then ``months`` of another site's data (from
    January on): the stale model, the stale model adapted to those months (gateway.codec.adapt) and a
    model trained from scratch on them, all judged on the following month; training times beside."""
    from gateway.codec.adapt import adapt, score
    from gateway.codec.weights import to_bytes

    sites = {"greensboro": greensboro()[1], "sand_point": sand_point()[1]}
    schema = greensboro()[0]
    fit_n, test_n = months * 730, 730
    out = []
    for src, dst in (("greensboro", "sand_point"), ("sand_point", "greensboro")):
        fit, test = sites[dst][:fit_n], sites[dst][fit_n : fit_n + test_n]
        for n in sizes:
            _say(f"regime change {src} -> {dst}, {n} samples per frame")
            stale, _ = train_to_size(sites[src], schema, n)
            t = time.perf_counter()
            scratch, _ = train_to_size(fit, schema, n)
            scratch_s = time.perf_counter() - t
            t = time.perf_counter()
            adapted = adapt(stale, fit)
            adapt_s = time.perf_counter() - t
            models = {"stale": stale, "scratch": scratch, "adapted": adapted}
            bps = {k: score(m, [test]) for k, m in models.items()}
            a, sc, st = (float(bps[k]["bytes_per_sample"]) for k in ("adapted", "scratch", "stale"))
            out.append(
                {
                    "from": src,
                    "to": dst,
                    "samples_per_frame": n,
                    "fit_samples": len(fit),
                    "test_samples": len(test),
                    "stale_bytes_per_sample": st,
                    "scratch_bytes_per_sample": sc,
                    "adapted_bytes_per_sample": a,
                    "adapted_vs_scratch_pct": round((a - sc) / sc * 100, 2),
                    "adapted_vs_stale_pct": round((a - st) / st * 100, 2),
                    "scratch_train_s": round(scratch_s, 3),
                    "adapt_train_s": round(adapt_s, 3),
                    "all_lossless": all(bool(b["lossless"]) for b in bps.values()),
                    "adapted_weight_file_bytes": len(to_bytes(adapted)),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--sizes", default="8,16,32")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--mutations", type=int, default=0, metavar="FRAMES",
                    help="also run the mutation run on this many test frames per data set and size")
    ap.add_argument("--regime", action="store_true",
                    help="add the regime-change section (issue 18); --datasets none runs it alone")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for name in [d for d in args.datasets.split(",") if d and d != "none"]:
        _say(f"loading {name}")
        schema, q = DATASETS[name]()
        for n in sizes:
            results.append(run_one(name, schema, q, n, args.mutations))
    targets = {
        "greensboro_16_le_2.6": all(
            r["bytes_per_sample"] <= 2.6
            for r in results
            if r["dataset"] == "greensboro" and r["samples_per_frame"] == 16
        ),
        "all_at_least_15pct_below_sprintz": all(r["vs_sprintz_pct"] <= -15 for r in results),
        # the node's part: the learned time structure for generation stays on the gateway (README)
        "weights_le_4096": all(r["bitstream_bytes"] <= 4096 for r in results),
        "decode_16_ge_20000_frames_per_s": all(
            r["decode_batch_frames_per_s"] >= 20000 for r in results if r["samples_per_frame"] == 16
        ),
        "all_lossless": all(r["lossless"] for r in results),
        "all_at_least_20pct_below_sprintz": all(r["vs_sprintz_pct"] <= -20 for r in results),
        "all_at_least_5pct_below_order0_bound": all(r["vs_order0_bound_pct"] <= -5 for r in results),
    }
    muts = [r["mutations"] for r in results if "mutations" in r]
    if muts:
        levels = [t for m in muts for lvl in m.values() for t in lvl.values() if isinstance(t, dict)]
        targets["mutations_no_crashes"] = all(t["crashes"] == 0 for t in levels)
        targets["wrong_model_frames_never_silently_wrong"] = all(
            m["frame_level"]["wrong_model"]["silently_wrong"] == 0 for m in muts
        )
    doc: dict[str, object] = {"benchmark": "codec", "results": results, "targets_met": targets}
    if args.regime:
        doc["regime_change"] = regime = regime_change(sizes)
        targets["adapted_within_1pct_of_scratch"] = all(r["adapted_vs_scratch_pct"] <= 1 for r in regime)
        targets["adapted_at_least_5pct_below_stale"] = all(r["adapted_vs_stale_pct"] <= -5 for r in regime)
        targets["adapted_faster_than_scratch"] = all(
            r["adapt_train_s"] < r["scratch_train_s"] for r in regime
        )
        targets["regime_all_lossless"] = all(r["all_lossless"] for r in regime)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        cols = [
            "dataset",
            "samples_per_frame",
            "bytes_per_sample",
            "sprintz_bytes_per_sample",
            "zstd19_dict2k_bytes_per_sample",
            "lpp_bytes_per_sample",
            "vs_sprintz_pct",
            "weight_file_bytes",
            "decode_batch_frames_per_s",
            "decode_single_frames_per_s",
        ]
        print(" ".join(f"{c[:14]:>14s}" for c in cols))
        for r in results:
            print(" ".join(f"{r[c]!s:>14s}" for c in cols))
        for r in doc.get("regime_change", []):  # type: ignore[union-attr]
            print(json.dumps(r))
        print(json.dumps(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
