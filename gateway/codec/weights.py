"""Weight files: a compressed ``.npz`` (read with ``allow_pickle=False``) of three arrays.

``ints`` (int32) holds every integer parameter in a fixed order, ``freq`` (uint16) the frequency
tables and ``meta`` (uint8) UTF-8 JSON: format, model id, version, schema, samples per frame,
buckets, training summary, metrics, creation time and ``sha256`` — the SHA-256 of ``ints``,
``freq`` and the canonical JSON of the other metadata, checked on every load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gateway.codec import tables
from gateway.codec.errors import CodecError, SchemaError, WeightsError
from gateway.codec.model import Model, Params
from gateway.codec.schema import Schema

FORMAT = "lora-gw-codec/1"
MAX_FILE_BYTES = 1 << 20


def _pack(p: Params) -> np.ndarray:
    parts = [
        p.base,
        p.a0.ravel(),
        p.a1.ravel(),
        p.a2.ravel(),
        p.lev,
        p.thr.ravel(),
        p.shift.ravel(),
        p.lo,
        p.hi,
        p.grid,
    ]
    return np.concatenate(parts).astype(np.int32)


def _unpack(ints: np.ndarray, freq: np.ndarray, c: int, k: int) -> Params:
    sizes = [c, c * c, c * c, c * c, c, c * (k - 1), c * (k + 2), c, c, c]
    if len(ints) != sum(sizes) or freq.size != c * (k + 3) * tables.NSYM:
        raise WeightsError("weights: array sizes do not match the channel and bucket counts")
    out, pos = [], 0
    for n in sizes:
        out.append(ints[pos : pos + n].astype(np.int64))
        pos += n
    base, a0, a1, a2, lev, thr, shift, lo, hi, grid = out
    freq = freq.astype(np.int64).reshape(c, k + 3, tables.NSYM)
    return Params(
        base,
        a0.reshape(c, c),
        a1.reshape(c, c),
        a2.reshape(c, c),
        lev,
        thr.reshape(c, k - 1),
        shift.reshape(c, k + 2),
        freq[:, : k + 2],
        lo,
        hi,
        grid,
        freq[:, k + 2],
    )


def _digest(ints: np.ndarray, freq: np.ndarray, meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h = hashlib.sha256()
    h.update(ints.astype("<i4").tobytes())
    h.update(freq.astype("<u2").tobytes())
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def to_bytes(model: Model, created: datetime | None = None) -> bytes:
    """Serialise a model; fills in creation time and SHA-256 in ``model.meta``."""
    ints = _pack(model.params)
    p = model.params
    freq = np.concatenate([p.freq, p.jfreq[:, None, :]], axis=1).astype(np.uint16)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "name": model.meta.get("name", f"model-{model.model_id}"),
        "model_id": model.model_id,
        "version": model.version,
        "samples_per_frame": model.samples_per_frame,
        "channels": len(model.schema),
        "buckets": model.params.buckets,
        "schema": model.schema.to_list(),
        "training": model.meta.get("training", {}),
        "metrics": model.meta.get("metrics", {}),
        "generation": model.meta.get("generation", {}),
        "created": model.meta.get("created")
        or (created or datetime.now(UTC)).replace(microsecond=0).isoformat(),
    }
    meta["sha256"] = _digest(ints, freq, meta)
    model.meta.update(meta)
    buf = io.BytesIO()
    raw_meta = np.frombuffer(json.dumps(meta, separators=(",", ":")).encode(), dtype=np.uint8)
    np.savez_compressed(buf, ints=ints, freq=freq, meta=raw_meta)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes, error: type[CodecError] = WeightsError) -> None:
    """Temp file + fsync + rename in the same directory, so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise error(f"cannot write {path}: {exc.strerror}") from None


def save(model: Model, path: str | os.PathLike[str]) -> int:
    """Write atomically (temp file + rename); returns the file size in bytes."""
    data = to_bytes(model)
    write_atomic(Path(path).absolute(), data)
    return len(data)


def from_bytes(data: bytes, source: str = "weights") -> Model:
    """Parse and verify a weight file; any defect raises WeightsError naming the source."""
    if len(data) > MAX_FILE_BYTES:
        raise WeightsError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            ints, freq, raw_meta = npz["ints"], npz["freq"], npz["meta"]
        meta = json.loads(raw_meta.astype(np.uint8).tobytes().decode())
    except Exception as exc:  # zipfile/zlib/numpy fail in many ways on a damaged file; all mean the same
        raise WeightsError(f"{source}: not a codec weight file ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(
            f"{source}: unknown weight format {meta.get('format') if isinstance(meta, dict) else None!r}"
        )
    if ints.dtype != np.int32 or freq.dtype != np.uint16:
        raise WeightsError(f"{source}: unexpected array types")
    if _digest(ints, freq, meta) != meta.get("sha256"):
        raise WeightsError(f"{source}: SHA-256 mismatch, the file is corrupt or was altered")
    try:
        schema = Schema.from_list(meta["schema"], source)
        c, k = int(meta["channels"]), int(meta["buckets"])
        params = _unpack(ints.ravel(), freq.ravel(), c, k)
        model = Model(
            schema, params, int(meta["samples_per_frame"]), int(meta["model_id"]), int(meta["version"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: incomplete metadata ({exc})") from None
    except SchemaError as exc:
        raise WeightsError(exc.message) from None
    except CodecError as exc:
        raise WeightsError(f"{source}: {exc.message}") from None
    model.meta.update(meta)
    return model


def load(path: str | os.PathLike[str]) -> Model:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror}") from None
    return from_bytes(data, str(path))
