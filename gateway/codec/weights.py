"""Weight files: a compressed ``.npz`` (read with ``allow_pickle=False``) of three arrays.

``ints`` (int32) holds every integer parameter in a fixed order, ``freq`` (uint16) the frequency
tables and ``meta`` (uint8) UTF-8 JSON: format, model id, version, schema, samples per frame,
buckets, training summary, metrics, creation time and ``sha256`` — the SHA-256 of ``ints``,
``freq`` and the canonical JSON of the other metadata, checked on every load.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gateway.codec import tables
from gateway.codec.errors import CodecError, SchemaError, WeightsError
from gateway.codec.model import (
    JITTER_PHASES,
    Model,
    Params,
    phased_jitter,
    uses_actw,
    uses_pmode,
    uses_vframe,
    uses_vmap,
)
from gateway.codec.schema import Q_LIMIT, Schema, printable

#: Format 1 holds one jitter table per channel; format 2 (written only when a model's jitter tables
#: differ by lattice phase, bitstream revision 3) holds the four; format 3 (written only when some
#: channel has a prediction mode, bitstream revision 4) holds the four and ``pmode`` after ``grid``
#: in ``ints``; format 4 (written only when some channel's activity weights differ from the
#: identity, bitstream revision 5) adds ``actw`` (C×C) after ``pmode``; format 5 (written only when
#: some channel has a value lattice, revision 6) adds ``vmap`` (C×5) after ``actw``; format 6
#: (written only when some lattice channel has a frame flag, revision 7) adds ``vframe`` (C) after
#: ``vmap``. All six load.
FORMAT = "lora-gw-codec/1"
FORMAT_PHASED = "lora-gw-codec/2"
FORMAT_PMODE = "lora-gw-codec/3"
FORMAT_ACTW = "lora-gw-codec/4"
FORMAT_VMAP = "lora-gw-codec/5"
FORMAT_VFRAME = "lora-gw-codec/6"
FORMATS = {
    FORMAT: 1,
    FORMAT_PHASED: JITTER_PHASES,
    FORMAT_PMODE: JITTER_PHASES,
    FORMAT_ACTW: JITTER_PHASES,
    FORMAT_VMAP: JITTER_PHASES,
    FORMAT_VFRAME: JITTER_PHASES,
}
MAX_FILE_BYTES = 1 << 20
#: Limit on the members' total uncompressed size (a 32-channel, 8-bucket model needs < 100 KB).
MAX_UNPACKED_BYTES = 1 << 20
MEMBERS = ("ints.npy", "freq.npy", "meta.npy")


def _pack(p: Params) -> np.ndarray:
    """Every integer parameter in the file's order; ``pmode`` after ``grid`` in formats 3 and 4,
    ``actw`` after it in format 4."""
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
    vframe = uses_vframe(p)
    vmap = uses_vmap(p) or vframe
    if uses_pmode(p) or uses_actw(p) or vmap:
        parts.append(p.pmode)
    if uses_actw(p) or vmap:
        parts.append(p.actw.ravel())
    if vmap:
        parts.append(p.vmap.ravel())  # type: ignore[union-attr]
    if vframe:
        parts.append(p.vframe)  # type: ignore[arg-type]
    return np.concatenate(parts).astype(np.int32)


def _unpack(
    ints: np.ndarray,
    freq: np.ndarray,
    c: int,
    k: int,
    phases: int = 1,
    pmode: bool = False,
    actw: bool = False,
    vmap: bool = False,
    vframe: bool = False,
) -> Params:
    """``phases`` jitter tables per channel follow the channel's ``k + 2`` tables in ``freq`` (1 in
    format 1: that table then serves every phase, which codes exactly as before); ``pmode``: the
    prediction modes follow ``grid`` (formats 3 and 4; else all 0); ``actw``: the activity weights
    follow them (formats 4 and 5; else the identity); ``vmap``: the value lattices follow those
    (format 5; else none); ``vframe``: the frame flags follow those (format 6; else none)."""
    vmap = vmap or vframe
    actw = actw or vmap
    pmode = pmode or actw
    sizes = [c, c * c, c * c, c * c, c, c * (k - 1), c * (k + 2), c, c, c]
    sizes += ([c] if pmode else []) + ([c * c] if actw else []) + ([c * 5] if vmap else [])
    sizes += [c] if vframe else []
    if len(ints) != sum(sizes) or freq.size != c * (k + 2 + phases) * tables.NSYM:
        raise WeightsError("weights: array sizes do not match the channel and bucket counts")
    out, pos = [], 0
    for n in sizes:
        out.append(ints[pos : pos + n].astype(np.int64))
        pos += n
    base, a0, a1, a2, lev, thr, shift, lo, hi, grid = out[:10]
    freq = freq.astype(np.int64).reshape(c, k + 2 + phases, tables.NSYM)
    jfreq = freq[:, k + 2 :]
    if phases == 1:
        jfreq = np.repeat(jfreq, JITTER_PHASES, axis=1)
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
        jfreq,
        out[10] if pmode else None,
        out[11].reshape(c, c) if actw else None,
        out[12].reshape(c, 5) if vmap else None,
        out[13] if vframe else None,
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
    phased = phased_jitter(p)
    jit = p.jfreq if phased or uses_pmode(p) or uses_actw(p) or uses_vmap(p) else p.jfreq[:, :1]
    freq = np.concatenate([p.freq, jit], axis=1).astype(np.uint16)
    meta: dict[str, Any] = {
        "format": FORMAT_VFRAME
        if uses_vframe(p)
        else FORMAT_VMAP
        if uses_vmap(p)
        else FORMAT_ACTW
        if uses_actw(p)
        else (FORMAT_PMODE if uses_pmode(p) else (FORMAT_PHASED if phased else FORMAT)),
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


def bitstream_bytes(model: Model) -> int:
    """The size of ``model``'s weight file without its ``generation`` block: the part a node holds
    (its tables are exported from it) and ``model train --max-bytes`` caps; the learned time structure
    for ``model generate`` never leaves the gateway. ``model.meta`` is left as it was."""
    saved = copy.deepcopy(model.meta)
    try:
        model.meta["generation"] = {}
        return len(to_bytes(model))
    finally:
        model.meta.clear()
        model.meta.update(saved)


def write_atomic(path: Path, data: bytes, error: type[CodecError] = WeightsError) -> None:
    """Temp file + fsync + rename in the same directory, so a crash never leaves half a file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror}") from None
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


def _read_members(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The three arrays of a weight file, read without trusting any size the file declares.

    The zip directory's uncompressed sizes are checked before anything is inflated, each member is
    read with a hard cap, and the ``.npy`` header's shape must match the bytes actually present, so a
    small file that claims (or inflates to) gigabytes fails at once instead of allocating them.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as exc:  # zipfile fails in many ways on a damaged directory; all mean the same
        raise WeightsError(f"{source}: not a codec weight file ({exc.__class__.__name__})") from None
    names = [i.filename for i in infos]
    extra = sorted(set(names) - set(MEMBERS))
    if extra:
        raise WeightsError(
            f"{source}: unexpected member(s) {', '.join(map(repr, extra))}; not a codec weight file"
        )
    missing = [m for m in MEMBERS if m not in names]
    if missing or len(names) != len(MEMBERS):
        what = f"lacks member(s) {', '.join(missing)}" if missing else "has duplicate members"
        raise WeightsError(f"{source}: {what}; not a codec weight file")
    odd = [i.filename for i in infos if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)]
    if odd:  # bzip2/lzma members inflate a whole chunk at once: no cap could bound their memory
        raise WeightsError(f"{source}: member {odd[0]} uses a compression other than deflate")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise WeightsError(
            f"{source}: members unpack to {total} bytes, more than the limit of {MAX_UNPACKED_BYTES}"
        )
    out: dict[str, np.ndarray] = {}
    for info in infos:
        try:
            with zf.open(info) as fh:
                body = fh.read(info.file_size + 1)
        except Exception as exc:  # zlib/zipfile errors on a damaged member
            raise WeightsError(f"{source}: not a codec weight file ({exc.__class__.__name__})") from None
        if len(body) != info.file_size:
            raise WeightsError(f"{source}: member {info.filename} is not the size its directory says")
        out[info.filename[: -len(".npy")]] = _npy(body, info.filename, source)
    return out


def _npy(body: bytes, member: str, source: str) -> np.ndarray:
    """Parse one ``.npy`` image; refuses object arrays (pickles) and a shape the bytes do not fill."""
    fh = io.BytesIO(body)
    try:
        major, _minor = np.lib.format.read_magic(fh)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif major in (2, 3):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy version {major}")
    except Exception as exc:  # numpy reports a damaged header in several ways; all mean the same here
        raise WeightsError(
            f"{source}: not a codec weight file ({member}: {exc.__class__.__name__})"
        ) from None
    if dtype.hasobject:
        raise WeightsError(f"{source}: {member} holds Python objects; refused")
    count = math.prod(shape)
    if count * dtype.itemsize != len(body) - fh.tell():
        raise WeightsError(
            f"{source}: {member} declares shape {shape} but holds {len(body) - fh.tell()} bytes"
        )
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=fh.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: Keys of the ``generation`` block; a key outside this set is refused (extend it with the format).
GENERATION_KEYS = frozenset({"mean", "reversion"})


def validate_generation_meta(meta: dict[str, Any]) -> None:
    """Refuse a malformed ``generation`` block of a weight file's metadata with one clear message.

    Checked at load (so at ``install``), so ``model generate`` never meets a block it cannot use:
    ``mean`` (the level the synthesis reverts to, quantised) and ``reversion`` (pull per moving step,
    0..1) are optional lists of one finite number per channel.
    """
    gen = meta.get("generation", {})
    if not isinstance(gen, dict):
        raise WeightsError("generation metadata must be a JSON object")
    if "format" in gen:  # the learned time structure: its own format, checked by its own module
        from gateway.codec.generate import validate

        validate(gen, meta.get("channels"))
        return
    unknown = sorted(set(gen) - GENERATION_KEYS)
    if unknown:
        raise WeightsError(f"generation metadata has unknown key(s) {', '.join(unknown)}")
    channels = meta.get("channels")
    for key, lo, hi in (("mean", -float(Q_LIMIT), float(Q_LIMIT)), ("reversion", 0.0, 1.0)):
        if key not in gen:
            continue
        v = gen[key]
        if not isinstance(v, list) or len(v) != channels:
            raise WeightsError(f"generation metadata: {key!r} must be a list of {channels} numbers")
        for i, x in enumerate(v):
            if (
                isinstance(x, bool)
                or not isinstance(x, int | float)
                or not math.isfinite(x)
                or not lo <= x <= hi
            ):
                raise WeightsError(
                    f"generation metadata: {key!r}[{i}] = {x!r} is not a number in {lo:g}..{hi:g}"
                )


def _check_meta(meta: dict[str, Any], source: str) -> None:
    """Types and ranges of the metadata fields a model is built from; each defect named."""
    for key in ("model_id", "version", "samples_per_frame", "channels", "buckets"):
        if key not in meta:
            raise WeightsError(f"{source}: incomplete metadata (no {key!r})")
        if not _is_int(meta[key]):
            raise WeightsError(f"{source}: {key!r} must be an integer, got {meta[key]!r}")
    if not 0 <= meta["model_id"] <= 15:
        raise WeightsError(f"{source}: model id {meta['model_id']} is out of range 0..15")
    if meta["version"] < 1:
        raise WeightsError(f"{source}: version {meta['version']} must be at least 1")
    name = meta.get("name", "")
    if not isinstance(name, str) or not printable(name) or len(name) > 64:
        raise WeightsError(
            f"{source}: model name {name!r} must be text of at most 64 characters without control characters"
        )
    for key in ("training", "metrics"):
        if not isinstance(meta.get(key, {}), dict):
            raise WeightsError(f"{source}: {key!r} metadata must be a JSON object")
    if not isinstance(meta.get("created", ""), str):
        raise WeightsError(f"{source}: 'created' must be a string")
    try:
        validate_generation_meta(meta)
    except WeightsError as exc:
        raise WeightsError(f"{source}: {exc.message}") from None


def from_bytes(data: bytes, source: str = "weights") -> Model:
    """Parse and verify a weight file; any defect raises WeightsError naming the source."""
    if len(data) > MAX_FILE_BYTES:
        raise WeightsError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    arrays = _read_members(data, source)
    ints, freq, raw_meta = arrays["ints"], arrays["freq"], arrays["meta"]
    if ints.dtype != np.int32 or freq.dtype != np.uint16 or raw_meta.dtype != np.uint8:
        raise WeightsError(f"{source}: unexpected array types")
    try:
        meta = json.loads(raw_meta.tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WeightsError(f"{source}: metadata is not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise WeightsError(
            f"{source}: unknown weight format {meta.get('format') if isinstance(meta, dict) else None!r}"
            f" (this gateway reads {', '.join(FORMATS)}: a newer trainer's file needs a newer gateway)"
        )
    if _digest(ints, freq, meta) != meta.get("sha256"):
        raise WeightsError(f"{source}: SHA-256 mismatch, the file is corrupt or was altered")
    _check_meta(meta, source)
    try:
        schema = Schema.from_list(meta["schema"], source)
        c, k = meta["channels"], meta["buckets"]
        fmt = meta["format"]
        params = _unpack(
            ints.ravel(),
            freq.ravel(),
            c,
            k,
            FORMATS[fmt],
            fmt == FORMAT_PMODE,
            fmt == FORMAT_ACTW,
            fmt == FORMAT_VMAP,
            fmt == FORMAT_VFRAME,
        )
        bad = np.flatnonzero(params.lo > params.hi) if len(params.lo) == len(schema) else []
        if len(bad):
            ch = int(bad[0])
            raise WeightsError(
                f"{source}: channel {schema.names[ch]!r} has lo {int(params.lo[ch])} "
                f"above hi {int(params.hi[ch])}"
            )
        model = Model(schema, params, meta["samples_per_frame"], meta["model_id"], meta["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: incomplete metadata ({exc})") from None
    except SchemaError as exc:
        raise WeightsError(exc.message) from None
    except WeightsError:
        raise
    except CodecError as exc:
        raise WeightsError(f"{source}: {exc.message}") from None
    model.meta.update(meta)
    return model


def read_file(path: str | os.PathLike[str], error: type[CodecError] = WeightsError) -> bytes:
    """A weight file's bytes, reading at most one byte past the size limit (a huge file is refused
    by ``from_bytes`` without being read whole)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


def load(path: str | os.PathLike[str]) -> Model:
    return from_bytes(read_file(path), str(path))
