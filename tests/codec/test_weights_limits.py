"""Weight files that must be refused before they cost memory or reach a command: zip bombs, extra
members, impossible ranges, malformed metadata. Each refusal is one clear line at ``install``."""

from __future__ import annotations

import io
import json
import math
import tracemalloc
import zipfile

import numpy as np
import pytest

from gateway.cli.main import main
from gateway.codec import ModelStore
from gateway.codec.errors import WeightsError
from gateway.codec.weights import (
    MAX_UNPACKED_BYTES,
    _digest,
    from_bytes,
    to_bytes,
    validate_generation_meta,
)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return out.getvalue()


def _rebuilt(model, meta_change=None, ints_change=None) -> bytes:
    """A weight file with altered metadata or integers and a *valid* SHA-256, as a careless tool
    (or an attacker who read docs/codec.md) would write it: only the new checks can refuse it."""
    members = _members(to_bytes(model))
    ints = np.load(io.BytesIO(members["ints.npy"]))
    freq = np.load(io.BytesIO(members["freq.npy"]))
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
    if meta_change:
        meta_change(meta)
    if ints_change:
        ints = ints.copy()
        ints_change(ints, model)
    meta["sha256"] = _digest(ints, freq, meta)
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return _zip({"ints.npy": _npy(ints), "freq.npy": _npy(freq), "meta.npy": _npy(raw)})


def test_rebuilt_file_without_changes_still_loads(model, series):
    back = from_bytes(_rebuilt(model), "same.npz")
    assert back.key == model.key and back.encode(series[:16]) == model.encode(series[:16])


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    """64 MiB of zeros deflate to ~64 KB: refused from the zip directory, without allocating it."""
    out = io.BytesIO()
    big = 64 << 20
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ints.npy", _npy(np.zeros(4, dtype=np.int32)))
        zf.writestr("freq.npy", _npy(np.zeros(4, dtype=np.uint16)))
        with zf.open("meta.npy", "w", force_zip64=True) as fh:
            hdr = {"descr": "|u1", "fortran_order": False, "shape": (big,)}
            np.lib.format.write_array_header_1_0(fh, hdr)
            chunk = bytes(1 << 20)
            for _ in range(big >> 20):
                fh.write(chunk)
    data = out.getvalue()
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError, match=f"more than the limit of {MAX_UNPACKED_BYTES}"):
            from_bytes(data, "bomb.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"refusing the bomb allocated {peak} bytes"
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match="more than the limit"):
        ModelStore(tmp_path / "state").install(path)


def test_npy_header_claiming_a_huge_shape_is_refused_without_allocating(model):
    members = _members(to_bytes(model))
    small = _npy(np.zeros(4, dtype=np.int32))
    members["ints.npy"] = small.replace(b"(4,)", b"(1099511627776,)".ljust(4))
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError, match="declares shape"):
            from_bytes(_zip(members), "claims.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m.update({"extra.npy": b"x"}), "unexpected member(s) 'extra.npy'"),
        (lambda m: m.pop("freq.npy"), "lacks member(s) freq.npy"),
    ],
)
def test_members_other_than_the_three_arrays_are_refused(model, tmp_path, change, fragment):
    members = _members(to_bytes(model))
    change(members)
    path = tmp_path / "odd.npz"
    path.write_bytes(_zip(members))
    with pytest.raises(WeightsError) as err:
        ModelStore(tmp_path / "state").install(path)
    assert fragment in err.value.message


def _set(key, value):
    return lambda meta: meta.__setitem__(key, value)


def _set_gen(value):
    return lambda meta: meta.__setitem__("generation", value)


@pytest.mark.parametrize(
    ("meta_change", "fragment"),
    [
        (_set("version", 1.5), "'version' must be an integer, got 1.5"),
        (_set("version", "2"), "'version' must be an integer, got '2'"),
        (_set("version", True), "'version' must be an integer"),
        (_set("version", 0), "version 0 must be at least 1"),
        (_set("model_id", 16), "model id 16 is out of range 0..15"),
        (_set("samples_per_frame", 16.0), "'samples_per_frame' must be an integer"),
        (_set("name", "evil\nname"), "without control characters"),
        (_set("name", "bell\x07"), "without control characters"),
        (lambda m: m["schema"][0].__setitem__("name", "temp\x1b[31m"), "control characters"),
        (lambda m: m["schema"][1].__setitem__("unit", "%\r"), "'unit' must be a string without control"),
        (_set_gen([1, 2]), "generation metadata must be a JSON object"),
        (_set_gen({"mean": "abc"}), "'mean' must be a list of 5 numbers"),
        (_set_gen({"mean": [1, 2]}), "'mean' must be a list of 5 numbers"),
        (_set_gen({"reversion": [0.1, 0.1, math.nan, 0.1, 0.1]}), "'reversion'[2] = nan"),
        (_set_gen({"reversion": [0.1, 0.1, 2, 0.1, 0.1]}), "is not a number in 0..1"),
        (_set_gen({"mean": [1, 2, 3, None, 5]}), "'mean'[3] = None"),
        (_set_gen({"menu": []}), "unknown key(s) menu"),
        (_set("metrics", []), "'metrics' metadata must be a JSON object"),
    ],
)
def test_install_refuses_malformed_metadata_with_a_clear_message(model, tmp_path, meta_change, fragment):
    path = tmp_path / "bad.npz"
    path.write_bytes(_rebuilt(model, meta_change=meta_change))
    with pytest.raises(WeightsError) as err:
        ModelStore(tmp_path / "state").install(path)
    assert fragment in err.value.message
    assert err.value.message.startswith(str(path))
    assert "\n" not in err.value.message.replace("\\n", "")


def test_install_refuses_lo_above_hi(model, tmp_path):
    c = len(model.schema)
    p = model.params
    offset = c + 3 * c * c + c + p.thr.size + p.shift.size  # base a0 a1 a2 lev thr shift, then lo

    def swap(ints, _model):
        ints[offset + 1] = p.hi[1] + 5  # lo of channel 1 above its hi

    path = tmp_path / "range.npz"
    path.write_bytes(_rebuilt(model, ints_change=swap))
    with pytest.raises(WeightsError, match=r"channel 'humidity' has lo \d+ above hi \d+"):
        ModelStore(tmp_path / "state").install(path)


def test_cli_install_of_a_broken_generation_block_is_one_line(model, tmp_path, capsys):
    path = tmp_path / "gen.npz"
    path.write_bytes(_rebuilt(model, meta_change=_set_gen({"mean": "x"})))
    code = main(["--state-dir", str(tmp_path / "state"), "model", "install", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "generation metadata" in err and "Traceback" not in err


def test_validate_generation_meta_accepts_the_trainers_block(model):
    validate_generation_meta({"channels": len(model.schema), "generation": model.meta["generation"]})
    validate_generation_meta({"channels": 5, "generation": {}})
    validate_generation_meta({"channels": 5})


def test_huge_file_is_refused_without_reading_it_whole(tmp_path):
    big = tmp_path / "big.npz"
    with open(big, "wb") as fh:
        fh.truncate(4 << 30)  # sparse: 4 GiB that cost no disk
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError, match="larger than 1048576 bytes"):
            ModelStore(tmp_path / "state").install(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_members_compressed_other_than_deflate_are_refused(model):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_BZIP2) as zf:
        for name, body in _members(to_bytes(model)).items():
            zf.writestr(name, body)
    with pytest.raises(WeightsError, match="uses a compression other than deflate"):
        from_bytes(out.getvalue(), "bz.npz")
