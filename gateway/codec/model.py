"""The learned integer model: predictor, context tables, and frame encode/decode.

Everything that decides bits is integer arithmetic on int64 (see docs/codec.md), so node C code
and numpy produce the same bytes. A frame holds 1..64 samples and decodes on its own.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.codec import lattice, scalar, tables
from gateway.codec.errors import CodecError, PayloadError
from gateway.codec.rangecoder import PROB_TOTAL, BatchDecoder, RangeEncoder
from gateway.codec.schema import Q_LIMIT, Schema

SHIFT = 12
HALF = 1 << (SHIFT - 1)
MAX_SAMPLES = 64
MAX_CONTEXTS = 8
# Sample-count symbol: 0 means "the model's samples_per_frame", n in 1..64 means n samples.
COUNT_FREQ = np.array([PROB_TOTAL - MAX_SAMPLES] + [1] * MAX_SAMPLES, dtype=np.int64)
COUNT_CUM = np.concatenate([[0], np.cumsum(COUNT_FREQ)])
GRID_BITS = 8
GRID_ONE = 1 << GRID_BITS
GRID_MAX = 1 << 20
# Fingerprint (docs/codec.md "Fingerprint"): names the bitstream revision, so frames of an older
# revision fail their check instead of decoding to garbage.
# Revision 3 added the jitter tables by lattice phase; a model whose phase tables are all equal codes
# exactly revision 2's bitstream and keeps revision 2's fingerprint (old frames and nodes stay valid).
FINGERPRINT_TAG = b"lora-gw codec bitstream 3\x00"
FINGERPRINT_TAG_2 = b"lora-gw codec bitstream 2\x00"
# Revision 4 added the per-channel prediction mode (pmode); a model whose modes are all 0 codes
# exactly revision 3's (or 2's) bitstream and keeps that revision's fingerprint.
FINGERPRINT_TAG_4 = b"lora-gw codec bitstream 4\x00"
# Revision 5 added the activity weights (actw); a model whose weights are the identity (activity =
# |previous change|) codes exactly revision 4's (or 3's, or 2's) bitstream and keeps that fingerprint.
FINGERPRINT_TAG_5 = b"lora-gw codec bitstream 5\x00"
# Revision 6 added the value lattices (vmap): a model without one codes revision 5's (or older) bitstream.
FINGERPRINT_TAG_6 = b"lora-gw codec bitstream 6\x00"
# Revision 7 added the frame flags of the value lattices (vframe): all 0 codes revision 6's bitstream.
FINGERPRINT_TAG_7 = b"lora-gw codec bitstream 7\x00"
FINGERPRINT_LEN = 8
_FP_ARRAYS = ("base", "a0", "a1", "a2", "lev", "thr", "shift", "freq", "grid", "jfreq")


def grid_split(r: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual → (grid index m, jitter e) with r = grid_value(m, grid) + e (encoder side)."""
    m = (r * GRID_ONE + (grid >> 1)) // grid
    return m, r - grid_value(m, grid)


def grid_value(m: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """round(m * grid / 256) in integers: (m * grid + 128) >> 8."""
    return (m * grid + (GRID_ONE >> 1)) >> GRID_BITS


# A sensor's lattice step is rarely a whole number of quantisation steps (≈10.1 mg): where m·grid/256
# falls near a half, the reading lands on either neighbour, near a whole it lands on it. The jitter
# is therefore coded with one of four tables chosen by that fractional part (quarters).
JITTER_PHASES = 4
_PHASE_SHIFT = GRID_BITS - 2
assert 1 << _PHASE_SHIFT == 64, "the batch decoder's phase mask 0xC0 assumes 64-symbol tables"


def grid_phase(m: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Jitter table of grid index m: ((m * grid) mod 256) >> 6 (floor modulo, so 0..3 for any m)."""
    return ((m * grid) & (GRID_ONE - 1)) >> _PHASE_SHIFT


# Prediction modes (Params.pmode, bitstream revision 4), per channel, used only where grid != 256:
# SNAP rounds the predicted change of a later sample onto the residual grid, so a prediction from a
# lattice point stays on the lattice (a fractional prediction would smear a sensor whose readings
# are mostly even, or multiples of 10.1, over the empty values); LATTICE_PHASE picks the jitter
# table by where the predicted value pred + m*grid/256 falls within one grid period (quarters),
# instead of within one step: the lattice is then one of the readings themselves, not of their
# differences (CGM current: 84 % even values, so the parity of the last reading tells the next's).
PMODE_SNAP = 1
PMODE_LATTICE_PHASE = 2
PMODE_ALL = PMODE_SNAP | PMODE_LATTICE_PHASE


def snap_delta(delta: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A predicted change rounded onto the grid: grid_value of its grid index (encoder and decoder)."""
    return grid_value((delta * GRID_ONE + (grid >> 1)) // grid, grid)


def lattice_phase(pred: np.ndarray, m: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Jitter table under PMODE_LATTICE_PHASE: ((256·pred + m·grid) mod grid) · 4 // grid (floor
    modulo, so 0..3): the quarter of the grid period in which the predicted lattice point lies."""
    return (((pred * GRID_ONE + m * grid) % grid) * JITTER_PHASES) // grid


# Activity weights (Params.actw, bitstream revision 5): a later sample's context is chosen by
# act = actw[c][c]·|d[t-1][c]| + Σ_{j<c} actw[c][j]·min(|r[t][j]|, ACT_CAP), where r[t][j] are the
# residuals of the channels already coded at this step: weather's humidity errs most where the
# temperature just did, one accelerometer axis where the others did (a shared burst of movement).
ACT_CAP = (1 << 16) - 1
ACT_WEIGHT_MAX = 1 << 12


def activity(actw: np.ndarray, prev_delta: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """Activity of every channel (last axis) from its previous change and the residuals of the
    earlier channels at the same step (``resid``, same shape)."""
    own = np.diagonal(actw) * np.abs(prev_delta)
    cross = np.tril(actw, -1)
    if not cross.any():
        return own
    return own + np.minimum(np.abs(resid), ACT_CAP) @ cross.T


def jitter_phase(pred: np.ndarray, m: np.ndarray, grid: np.ndarray, pmode: np.ndarray) -> np.ndarray:
    """The jitter table of each value: lattice_phase where pmode asks for it, else grid_phase."""
    return np.where(pmode & PMODE_LATTICE_PHASE, lattice_phase(pred, m, grid), grid_phase(m, grid))


@dataclass(frozen=True, slots=True)
class Params:
    """Integer weights. C channels, K activity buckets, 2 + K tables per channel.

    base[C]            typical value (quantised), the first sample's prior
    a0[C, C]           first sample: weights on earlier channels' offsets from base (j < c)
    a1[C, C]           later samples: weights on every channel's previous delta
    a2[C, C]           later samples: weights on earlier channels' current delta (j < c)
    lev[C]             later samples: weight on the channel's offset from base (mean reversion)
    thr[C, K-1]        activity thresholds (:func:`activity`; |previous delta| by default), ascending
    shift[C, 2+K]      binning shift k of each table; table 0's is 32 + s for the windowed
                       first-sample binning (tables.first_to_symbols), else the zigzag one
    freq[C, 2+K, 64]   symbol frequencies (sum 4096) of each table:
                       table 0 first sample, 1 second sample, 2+b later samples in bucket b
    lo[C], hi[C]       plausible range (quantised) for generation and gap filling
    grid[C]            residual grid step in 1/256 units; 256 = none. With a grid, a residual r
                       is sent as m (context tables) and jitter e = r - round(m * grid / 256)
    jfreq[C, 4, 64]    jitter symbol frequencies (binning shift 0), used where grid != 256, one
                       table per lattice phase of the grid index (grid_phase)
    pmode[C]           prediction mode bits (PMODE_SNAP, PMODE_LATTICE_PHASE), only where
                       grid != 256; all 0 (the default) is revision 3's bitstream
    actw[C, C]         activity weights (:func:`activity`): diagonal on the channel's own previous
                       change, j < c on earlier channels' residuals at the same step; the identity
                       (the default) is revision 4's bitstream
    vmap[C, 5]         value lattice (:mod:`gateway.codec.lattice`) P, Q, D, mode and the off-lattice
                       flag's frequency (of 4096): the channel is coded as lattice indices, and
                       an off-lattice reading's jitter follows the frame; mode 0 everywhere (the
                       default) is revision 5's bitstream
    vframe[C]          frame flag frequency (of 4096) per lattice channel: each frame first says
                       whether any of its readings is off the lattice, and only such a frame sends
                       the per-reading flags; 0 (none, the default) is revision 6's bitstream
    """

    base: np.ndarray
    a0: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    lev: np.ndarray
    thr: np.ndarray
    shift: np.ndarray
    freq: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    grid: np.ndarray
    jfreq: np.ndarray
    pmode: np.ndarray | None = None
    actw: np.ndarray | None = None
    vmap: np.ndarray | None = None
    vframe: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pmode is None:
            object.__setattr__(self, "pmode", np.zeros(len(self.base), dtype=np.int64))
        if self.actw is None:
            object.__setattr__(self, "actw", np.eye(len(self.base), dtype=np.int64))
        if self.vmap is None:
            object.__setattr__(self, "vmap", lattice.identity(len(self.base)))
        if self.vframe is None:
            object.__setattr__(self, "vframe", np.zeros(len(self.base), dtype=np.int64))

    @property
    def channels(self) -> int:
        return len(self.base)

    @property
    def buckets(self) -> int:
        return self.thr.shape[1] + 1

    def validate(self) -> None:
        c = self.channels
        k = self.buckets
        shapes = {
            "a0": (c, c),
            "a1": (c, c),
            "a2": (c, c),
            "lev": (c,),
            "thr": (c, k - 1),
            "shift": (c, 2 + k),
            "freq": (c, 2 + k, tables.NSYM),
            "lo": (c,),
            "hi": (c,),
            "grid": (c,),
            "jfreq": (c, JITTER_PHASES, tables.NSYM),
            "pmode": (c,),
            "actw": (c, c),
            "vmap": (c, lattice.FIELDS),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise CodecError(f"weights: {name} has shape {getattr(self, name).shape}, expected {shape}")
        if not 1 <= k <= MAX_CONTEXTS:
            raise CodecError(f"weights: {k} activity buckets, expected 1..{MAX_CONTEXTS}")
        if np.any(self.freq < 1) or np.any(self.freq.sum(axis=-1) != PROB_TOTAL):
            raise CodecError("weights: every frequency table must be positive and sum to 4096")
        if np.any(self.jfreq < 1) or np.any(self.jfreq.sum(axis=-1) != PROB_TOTAL):
            raise CodecError("weights: every jitter table must be positive and sum to 4096")
        if np.any(self.grid < GRID_ONE) or np.any(self.grid > GRID_MAX):
            raise CodecError("weights: residual grid out of range")
        assert self.pmode is not None
        if np.any(self.pmode & ~PMODE_ALL) or np.any((self.pmode != 0) & (self.grid == GRID_ONE)):
            raise CodecError("weights: prediction mode out of range or set on a channel without grid")
        assert self.actw is not None
        if np.any(self.actw < 0) or np.any(self.actw >= ACT_WEIGHT_MAX) or np.any(np.triu(self.actw, 1)):
            raise CodecError("weights: activity weights out of range or on a later channel")
        assert self.vmap is not None
        problem = lattice.check(self.vmap)
        if problem:
            raise CodecError(f"weights: {problem}")
        assert self.vframe is not None
        problem = lattice.check_frames(self.vframe, self.vmap)
        if problem:
            raise CodecError(f"weights: {problem}")
        first = self.shift[:, 0] - np.where(self.shift[:, 0] >= tables.WINDOW, tables.WINDOW, 0)
        if np.any(self.shift[:, 1:] < 0) or np.any(self.shift[:, 1:] > tables.MAX_SHIFT):
            raise CodecError("weights: binning shift out of range")
        if np.any(first < 0) or np.any(first > tables.MAX_SHIFT):
            raise CodecError("weights: first-sample binning shift out of range")
        if np.any(np.triu(self.a0) != 0) or np.any(np.triu(self.a2) != 0):
            raise CodecError("weights: same-sample weights must use earlier channels only")
        for arr in (self.a0, self.a1, self.a2, self.lev):
            if np.any(np.abs(arr) >= 1 << 24):
                raise CodecError("weights: predictor weight out of range")
        if np.any(np.diff(self.thr, axis=1) < 0):
            raise CodecError("weights: activity thresholds must ascend")


def phased_jitter(p: Params) -> bool:
    """Whether any channel's jitter tables differ by phase (else the bitstream is revision 2's)."""
    return bool(np.any(p.jfreq != p.jfreq[:, :1]))


def uses_pmode(p: Params) -> bool:
    """Whether any channel has a prediction mode (bitstream revision 4; else revision 3's or 2's)."""
    return bool(np.any(p.pmode))


def uses_actw(p: Params) -> bool:
    """Whether any channel's activity weights differ from the identity (bitstream revision 5)."""
    return bool(np.any(p.actw != np.eye(p.channels, dtype=np.int64)))


def uses_vmap(p: Params) -> bool:
    """Whether any channel is coded on a value lattice (bitstream revision 6)."""
    assert p.vmap is not None
    return lattice.used(p.vmap)


def uses_vframe(p: Params) -> bool:
    """Whether any lattice channel sends a frame flag (bitstream revision 7)."""
    assert p.vframe is not None
    return bool(np.any(p.vframe))


def fingerprint_message(model: Model) -> bytes:
    """The canonical bytes the fingerprint hashes: tag, header, integer arrays, schema steps.

    ``jfreq`` enters as C×4×64 under revision 3's tag; a model whose phase tables are equal codes
    revision 2's bitstream and hashes as revision 2 did (tag 2, ``jfreq`` as C×64). A model with a
    prediction mode hashes under revision 4's tag, ``jfreq`` as C×4×64 and ``pmode`` after it; one
    with activity weights under revision 5's, ``pmode`` and then ``actw`` after ``jfreq``; one with a
    value lattice under revision 6's, ``pmode``, ``actw`` and ``vmap`` after ``jfreq``; one with
    frame flags under revision 7's, ``vframe`` after those."""
    p = model.params
    head = struct.pack(
        "<BIBBB", model.model_id, model.version, model.samples_per_frame, p.channels, p.buckets
    )
    steps = ",".join(repr(float(ch.step)) for ch in model.schema.channels).encode("ascii")
    if uses_vframe(p):
        names = (*_FP_ARRAYS, "pmode", "actw", "vmap", "vframe")
        arrays = b"".join(np.ascontiguousarray(getattr(p, name), dtype="<i4").tobytes() for name in names)
        return FINGERPRINT_TAG_7 + head + arrays + steps
    if uses_vmap(p):
        names = (*_FP_ARRAYS, "pmode", "actw", "vmap")
        arrays = b"".join(np.ascontiguousarray(getattr(p, name), dtype="<i4").tobytes() for name in names)
        return FINGERPRINT_TAG_6 + head + arrays + steps
    if uses_actw(p):
        names = (*_FP_ARRAYS, "pmode", "actw")
        arrays = b"".join(np.ascontiguousarray(getattr(p, name), dtype="<i4").tobytes() for name in names)
        return FINGERPRINT_TAG_5 + head + arrays + steps
    if uses_pmode(p):
        arrays = b"".join(
            np.ascontiguousarray(getattr(p, name), dtype="<i4").tobytes() for name in (*_FP_ARRAYS, "pmode")
        )
        return FINGERPRINT_TAG_4 + head + arrays + steps
    phased = phased_jitter(p)
    arrays = b"".join(
        np.ascontiguousarray(
            p.jfreq[:, 0] if name == "jfreq" and not phased else getattr(p, name), dtype="<i4"
        ).tobytes()
        for name in _FP_ARRAYS
    )
    return (FINGERPRINT_TAG if phased else FINGERPRINT_TAG_2) + head + arrays + steps


def activity_bucket(prev_delta: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Bucket of |previous delta| among ascending thresholds (count of thresholds below it)."""
    a = np.abs(prev_delta)
    return (a[..., None] > thr).sum(axis=-1)


@dataclass(eq=False)
class Model:
    """A trained model plus its metadata (see :mod:`gateway.codec.weights` for the file)."""

    schema: Schema
    params: Params
    samples_per_frame: int
    model_id: int = 0
    version: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    _cum: np.ndarray = field(init=False, repr=False)
    _lut: np.ndarray = field(init=False, repr=False)
    _jcum: np.ndarray = field(init=False, repr=False)
    _jlut: np.ndarray = field(init=False, repr=False)
    _scalar: scalar.ScalarTables | None = field(init=False, repr=False, default=None)
    _flat: list[tuple[np.ndarray, ...]] | None = field(init=False, repr=False, default=None)
    _fingerprint: bytes | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.params.validate()
        if self.params.channels != len(self.schema):
            raise CodecError("weights: channel count differs from the schema")
        if not 1 <= self.samples_per_frame <= MAX_SAMPLES:
            raise CodecError(f"samples per frame must be 1..{MAX_SAMPLES}")
        if not 0 <= self.model_id <= 15 or not 1 <= self.version <= 0xFFFF_FFFF:
            raise CodecError("model id must be 0..15 and version 1..2^32-1")
        self._cum = tables.cumulative(self.params.freq)
        self._lut = tables.lookup(self.params.freq)
        self._jcum = tables.cumulative(self.params.jfreq)
        self._jlut = tables.lookup(self.params.jfreq)

    @property
    def key(self) -> str:
        return f"{self.model_id}@{self.version}"

    @property
    def fingerprint(self) -> bytes:
        """8 bytes naming exactly this bitstream: the frame layer mixes them into the CRC/MIC, so a
        frame checked under another model (same id and version mod 8) fails instead of decoding to
        wrong values. SHA-256 over a canonical encoding (docs/codec.md), never over file bytes."""
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(fingerprint_message(self)).digest()[:FINGERPRINT_LEN]
        return self._fingerprint

    # ------------------------------------------------------------------ prediction
    def predict_all(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For whole frames of lattice indices x (F × N × C, :meth:`to_index`; the readings
        themselves where no channel has a lattice): (predictions, table index), as the decoder."""
        p = self.params
        _f, n, _c = x.shape
        d = np.zeros_like(x)
        d[:, 1:] = x[:, 1:] - x[:, :-1]
        pred = np.empty_like(x)
        table = np.empty_like(x)
        off0 = x[:, 0] - p.base
        pred[:, 0] = p.base + ((off0 @ p.a0.T + HALF) >> SHIFT)
        table[:, 0] = 0
        snap = (p.pmode & PMODE_SNAP) != 0
        for t in range(1, n):
            acc = d[:, t - 1] @ p.a1.T + d[:, t] @ p.a2.T + p.lev * (x[:, t - 1] - p.base)
            delta = (acc + HALF) >> SHIFT
            if snap.any():
                delta = np.where(snap, snap_delta(delta, p.grid), delta)
            pred[:, t] = x[:, t - 1] + delta
        np.clip(pred, -Q_LIMIT, Q_LIMIT, out=pred)
        if n > 1:
            table[:, 1] = 1
        if n > 2:
            act = activity(p.actw, d[:, 1:-1], x[:, 2:] - pred[:, 2:])
            table[:, 2:] = 2 + (act[..., None] > p.thr).sum(axis=-1)
        return pred, table

    def residuals(self, frames: np.ndarray) -> np.ndarray:
        """Integer prediction residuals of whole frames of readings (F × N × C): reading minus
        predicted reading (on a lattice channel the prediction's lattice value), in quantisation
        steps, so live error statistics mean the same with or without a lattice."""
        x = np.asarray(frames, dtype=np.int64)
        pred, _ = self.predict_all(self.to_index(x)[0])
        return x - self.from_index(pred)

    def to_index(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Readings (…× C) → (lattice index, jitter ≥ 0); the readings and zeros without a lattice."""
        assert self.params.vmap is not None
        if not uses_vmap(self.params):
            return x, np.zeros_like(x)
        return lattice.index(x, self.params.vmap)

    def snap(self, x: np.ndarray) -> np.ndarray:
        """Readings moved to the nearest value their channel's lattice holds (generated and
        estimated readings), kept within ``lo``..``hi``; unchanged without a lattice."""
        assert self.params.vmap is not None
        if not uses_vmap(self.params):
            return x
        p = self.params
        near = lattice.nearest(np.asarray(x, dtype=np.int64), p.vmap)
        k = lattice.index(near, p.vmap)[0]
        near = np.where(near > p.hi, lattice.value(k - 1, p.vmap), near)  # stay inside the range
        near = np.where(near < p.lo, lattice.value(k + 1, p.vmap), near)
        return np.clip(near, p.lo, p.hi)

    def from_index(self, k: np.ndarray, j: np.ndarray | None = None) -> np.ndarray:
        """Lattice indices (and jitters) → readings."""
        assert self.params.vmap is not None
        if not uses_vmap(self.params):
            return k if j is None else k + j
        x = lattice.value(k, self.params.vmap)
        return x if j is None else x + j

    # ------------------------------------------------------------------ encode
    def encode(self, samples: np.ndarray) -> bytes:
        """One frame (N × C quantised ints, 1 ≤ N ≤ 64) → codec payload."""
        x = np.asarray(samples, dtype=np.int64)
        if x.ndim != 2:
            raise CodecError(f"a frame is samples × {self.params.channels} channels, got shape {x.shape}")
        return self.encode_many(x[None])[0]

    def encode_many(self, frames: np.ndarray) -> list[bytes]:
        """Frames of equal length (F × N × C) → payloads; vectorised except the range coder."""
        x = np.asarray(frames, dtype=np.int64)
        if x.ndim != 3 or x.shape[2] != self.params.channels or not 1 <= x.shape[1] <= MAX_SAMPLES:
            raise CodecError(f"a frame needs 1..{MAX_SAMPLES} samples × {self.params.channels} channels")
        if np.any(np.abs(x) >= Q_LIMIT):
            raise CodecError(f"a quantised value exceeds ±{Q_LIMIT} steps")
        f, n, c = x.shape
        x, jit = self.to_index(x)
        ltail = self._lattice_tail(x, jit)
        pred, table = self.predict_all(x)
        chan = np.broadcast_to(np.arange(c), x.shape)
        k = self.params.shift[chan, table]
        grid = self.params.grid[chan]
        m, e = grid_split(x - pred, grid)
        sym, raw, nraw = tables.to_symbols(m, k)
        # A windowed table 0 (tables.first_to_symbols) bins the first sample directly; its escapes
        # add a second raw field (the tail), written as its own raw-bit step.
        tail = np.zeros_like(raw)
        ntail = np.zeros_like(nraw)
        win = self.params.shift[:, 0] >= tables.WINDOW
        if win.any():
            s0, r0, n0, t0, nt0 = tables.first_to_symbols(m[:, 0], k[:, 0] - tables.WINDOW)
            sym[:, 0] = np.where(win, s0, sym[:, 0])
            raw[:, 0] = np.where(win, r0, raw[:, 0])
            nraw[:, 0] = np.where(win, n0, nraw[:, 0])
            tail[:, 0] = np.where(win, t0, 0)
            ntail[:, 0] = np.where(win, nt0, 0)
        cum = self._cum[chan, table, sym]
        freq = self.params.freq[chan, table, sym]
        jsym, jraw, jnraw = tables.to_symbols(e, 0)
        phase = jitter_phase(pred, m, grid, self.params.pmode[chan])
        jcum = self._jcum[chan, phase, jsym]
        jfreq = np.where(grid != GRID_ONE, self.params.jfreq[chan, phase, jsym], 0)  # 0: no jitter
        count_sym = 0 if n == self.samples_per_frame else n
        out = []
        for i in range(f):
            enc = RangeEncoder()
            enc.encode(int(COUNT_CUM[count_sym]), int(COUNT_FREQ[count_sym]))
            for cu, fr, rv, nb, tv, tn, jc, jf, jr, jn in zip(
                cum[i].ravel().tolist(),
                freq[i].ravel().tolist(),
                raw[i].ravel().tolist(),
                nraw[i].ravel().tolist(),
                tail[i].ravel().tolist(),
                ntail[i].ravel().tolist(),
                jcum[i].ravel().tolist(),
                jfreq[i].ravel().tolist(),
                jraw[i].ravel().tolist(),
                jnraw[i].ravel().tolist(),
                strict=True,
            ):
                enc.encode(cu, fr)
                if nb:
                    enc.encode_raw(rv, nb)
                if tn:
                    enc.encode_raw(tv, tn)
                if jf:
                    enc.encode(jc, jf)
                    if jn:
                        enc.encode_raw(jr, jn)
            if ltail is not None:  # revision 6: off-lattice flags and jitters after the samples
                for hc, hf in zip(*(a[i].tolist() for a in ltail[:2]), strict=True):
                    if hf:  # revision 7: the frame flags first
                        enc.encode(hc, hf)
                for lc, lf, lv, ln in zip(*(a[i].ravel().tolist() for a in ltail[2:]), strict=True):
                    if lf:
                        enc.encode(lc, lf)
                    if ln:
                        enc.encode_raw(lv, ln)
            out.append(enc.finish())
        return out

    def _lattice_tail(self, k: np.ndarray, jit: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """Per frame and lattice channel the frame flag's (cum, freq), freq 0 where the channel has
        none; then per frame, time step and lattice channel the off-lattice flag's (cum, freq), freq
        0 where the frame flag said all on, and the jitter's raw value and bit count (``j − 1`` in
        bitlen(gap − 2) bits; none on the lattice)."""
        vm = self.params.vmap
        assert vm is not None
        if not lattice.used(vm):
            return None
        cols = np.flatnonzero(vm[:, 3] != lattice.NONE)
        sub = vm[cols]
        kc, jc = k[..., cols], jit[..., cols]
        foff = sub[:, 4]
        off = jc != 0
        assert self.params.vframe is not None
        g = self.params.vframe[cols]
        some = off.any(axis=1)  # frames × lattice channels
        hcum = np.where(some, PROB_TOTAL - g, 0)
        hfreq = np.where(g == 0, 0, np.where(some, g, PROB_TOTAL - g))
        sent = (some | (g == 0))[:, None, :]
        cum = np.where(off, PROB_TOTAL - foff, 0)
        freq = np.where(sent, np.where(off, foff, PROB_TOTAL - foff), 0)
        nbits = np.where(off, lattice.bit_length(lattice.gap(kc, sub) - 2), 0)
        return hcum, hfreq, cum, freq, np.where(off, jc - 1, 0), nbits

    # ------------------------------------------------------------------ decode
    def decode(self, payload: bytes) -> np.ndarray:
        """Codec payload → N × C quantised int64 samples (plain-int path, fast for one frame)."""
        if not isinstance(payload, (bytes, bytearray)) or len(payload) > 4096:
            raise PayloadError("codec payload must be bytes, at most 4096 long")
        if self._scalar is None:
            self._scalar = scalar.build(
                self.params,
                self.samples_per_frame,
                COUNT_FREQ,
                COUNT_CUM,
                self._cum,
                self._lut,
                self._jcum,
                self._jlut,
            )
        return np.array(scalar.decode(self._scalar, payload, self.key), dtype=np.int64)

    def decode_many(self, payloads: list[bytes]) -> list[np.ndarray]:
        """Decode many payloads in lock step (numpy lanes); raises the first frame's PayloadError.
        Use :meth:`decode_each` where one bad frame must not cost the others."""
        out = self.decode_each(payloads)
        for i, item in enumerate(out):
            if isinstance(item, PayloadError):
                raise PayloadError(f"payload {i}: {item.message}")
        return out  # type: ignore[return-value]

    def decode_each(self, payloads: list[bytes]) -> list[np.ndarray | PayloadError]:
        """Per-frame results of a batch decode: samples, or the PayloadError of that frame alone.

        A lane is refused when its coder reaches a state no encoder produces, a value leaves ±2^30,
        or the payload holds more bytes than its symbols consumed (+2) or fewer than they consumed
        (cut short): it was not made by this model, or was corrupted on the way."""
        results: list[np.ndarray | PayloadError] = [
            PayloadError("codec payload must be bytes, at most 4096 long")
        ] * len(payloads)
        good = [i for i, p in enumerate(payloads) if isinstance(p, bytes | bytearray) and len(p) <= 4096]
        if not good:
            return results
        data = [bytes(payloads[i]) for i in good]
        dec = BatchDecoder(data, max(len(p) for p in data))
        r, v = dec.target()
        sym = np.searchsorted(COUNT_CUM, v, side="right") - 1
        dec.consume(r, COUNT_CUM[sym], COUNT_FREQ[sym])
        counts = np.where(sym == 0, self.samples_per_frame, sym)
        lengths_all = np.array([len(p) for p in data])
        for n in np.unique(counts).tolist():
            lanes = np.flatnonzero(counts == n)
            sub = _SubDecoder(dec, lanes)
            x = self._decode_lanes(sub, int(n))
            used = sub.dec.pos - 4
            lengths = lengths_all[lanes]
            bad = sub.dec.bad | (lengths > used + 2) | (lengths < used)
            for j, lane in enumerate(lanes.tolist()):
                results[good[lane]] = (
                    PayloadError(f"payload does not decode under model {self.key}") if bad[j] else x[j]
                )
        return results

    def _flat_tables(self) -> list[tuple[np.ndarray, ...]]:
        """Per channel, tables flattened for one-index gathers: lut, cum, freq, z0, nraw (+ jitter)."""
        if self._flat is None:
            p = self.params
            ntab = p.shift.shape[1]
            flat = []
            for ch in range(p.channels):
                ks = [int(k) if k < tables.WINDOW else 0 for k in p.shift[ch]]  # windowed: own path
                z0 = np.stack([tables.symbol_base(k) for k in ks])
                nraw = np.stack([tables.raw_bits(np.arange(tables.NSYM), k) for k in ks])
                flat.append(
                    (
                        self._lut[ch].ravel(),
                        self._cum[ch][:, :-1].ravel(),
                        p.freq[ch].ravel(),
                        z0.ravel(),
                        nraw.ravel(),
                        np.arange(ntab) * PROB_TOTAL,
                        np.arange(ntab) * tables.NSYM,
                        self._jlut[ch].ravel(),
                        self._jcum[ch][:, :-1].ravel(),
                        p.jfreq[ch].ravel(),
                        tables.symbol_base(0),
                        tables.raw_bits(np.arange(tables.NSYM), 0),
                    )
                )
            self._flat = flat
        return self._flat

    def _decode_lanes(self, dec: _SubDecoder, n: int) -> np.ndarray:
        p = self.params
        c = p.channels
        f = dec.size
        dd = dec.dec
        flat = self._flat_tables()
        x = np.zeros((f, n, c), dtype=np.int64)
        d = np.zeros((f, n, c), dtype=np.int64)
        off0 = np.zeros((f, c), dtype=np.int64)
        zeros = np.zeros(f, dtype=np.int64)
        rabs = np.zeros((f, c), dtype=np.int64)  # min(|residual|, ACT_CAP) at this step (actw)
        own = np.diagonal(p.actw)
        cross = np.tril(p.actw, -1)
        for t in range(n):
            if t >= 1:
                lev_acc = p.lev * (x[:, t - 1] - p.base)
                if t >= 2:
                    lev_acc += d[:, t - 1] @ p.a1.T
            for ch in range(c):
                lut, cum, freq, z0, nraw, lut_off, tab_off, jlut, jcum, jfreq, jz0, jnraw = flat[ch]
                if t == 0:
                    pr = p.base[ch] + ((off0 @ p.a0[ch] + HALF) >> SHIFT)
                    tb = 0
                else:
                    acc = lev_acc[:, ch] + d[:, t] @ p.a2[ch] if ch else lev_acc[:, ch]
                    delta = (acc + HALF) >> SHIFT
                    if p.pmode[ch] & PMODE_SNAP:
                        delta = snap_delta(delta, p.grid[ch])
                    pr = x[:, t - 1, ch] + delta
                    if t == 1:
                        tb = 1
                    else:
                        act = own[ch] * np.abs(d[:, t - 1, ch])
                        if cross[ch].any():
                            act = act + rabs @ cross[ch]
                        tb = 2 + np.searchsorted(p.thr[ch], act, side="left")
                np.clip(pr, -Q_LIMIT, Q_LIMIT, out=pr)
                r, v = dd.target()
                sym = lut[lut_off[tb] + v]
                idx = tab_off[tb] + sym
                dd.consume(r, cum[idx], freq[idx])
                if t == 0 and p.shift[ch, 0] >= tables.WINDOW:  # windowed (tables.first_to_symbols)
                    k0 = p.shift[ch, 0] - tables.WINDOW
                    nb = tables.first_raw_bits(sym, k0)
                    rv = dd.raw(nb)
                    esc = (sym == tables.ESC_LOW) | (sym == tables.ESC_HIGH)
                    tn = np.where(esc, rv, 0)
                    tv = dd.raw(tn) if tn.any() else zeros
                    resid = tables.first_from_symbols(sym, rv, tv, k0)
                else:
                    nb = nraw[idx]
                    z = z0[idx] + (dd.raw(nb) if nb.any() else zeros)
                    resid = (z >> 1) ^ -(z & 1)
                grid = int(p.grid[ch])
                if grid != GRID_ONE:
                    # (m·g) & 0xC0 is grid_phase · 64, the phase's row in the flattened jitter tables.
                    if p.pmode[ch] & PMODE_LATTICE_PHASE:
                        ph64 = lattice_phase(pr, resid, np.int64(grid)) << 6
                    else:
                        ph64 = (resid * grid) & 0xC0
                    r, v = dd.target()
                    js = jlut[ph64 * (PROB_TOTAL // tables.NSYM) + v]
                    jidx = ph64 + js
                    dd.consume(r, jcum[jidx], jfreq[jidx])
                    nb = jnraw[js]
                    z = jz0[js] + (dd.raw(nb) if nb.any() else zeros)
                    resid = grid_value(resid, grid) + ((z >> 1) ^ -(z & 1))
                val = pr + resid
                out = np.abs(val) >= Q_LIMIT
                if out.any():  # refuse the lane now: later arithmetic on it could overflow int64
                    dd.bad |= out
                    val = np.where(out, 0, val)
                x[:, t, ch] = val
                rabs[:, ch] = np.minimum(np.abs(val - pr), ACT_CAP)
                if t == 0:
                    off0[:, ch] = val - p.base[ch]
                else:
                    d[:, t, ch] = val - x[:, t - 1, ch]
        assert p.vmap is not None
        if not lattice.used(p.vmap):
            return x
        # Revision 6: per sample and lattice channel the off-lattice flag, then the jitter's bits
        # (rare: most steps are one table lookup and one consume with constant arrays).
        jit = np.zeros_like(x)
        room = lattice.gap(x, p.vmap) - 2  # the largest jitter − 1 at each index
        nbits = lattice.bit_length(room)
        mapped = [
            (ch, PROB_TOTAL - int(p.vmap[ch, 4]), np.full(f, PROB_TOTAL - int(p.vmap[ch, 4]), dtype=np.int64))
            for ch in np.flatnonzero(p.vmap[:, 3] != lattice.NONE).tolist()
        ]
        # Revision 7: first the frame flag of each lattice channel that has one; a frame whose flag
        # says "all on" sends no per-reading flags for that channel.
        assert p.vframe is not None
        sends: dict[int, np.ndarray | None] = {}
        for ch, _split, _on in mapped:
            g = int(p.vframe[ch])
            if g:
                r, v = dd.target()
                some = v >= PROB_TOTAL - g
                dd.consume(r, np.where(some, PROB_TOTAL - g, 0), np.where(some, g, PROB_TOTAL - g))
                sends[ch] = some
            else:
                sends[ch] = None
        seen = {ch: np.zeros(f, dtype=bool) for ch, _s, _o in mapped}
        for t in range(n):
            for ch, split, on_freq in mapped:
                lanes = sends[ch]
                if lanes is None:
                    r, v = dd.target()
                    off = v >= split
                    if not off.any():
                        dd.consume(r, zeros, on_freq)
                        continue
                    dd.consume(r, np.where(off, split, 0), np.where(off, PROB_TOTAL - split, split))
                else:
                    if not lanes.any():
                        continue
                    r, v = dd.target_where(lanes)
                    off = lanes & (v >= split)
                    cum, freq = np.where(off, split, 0), np.where(off, PROB_TOTAL - split, split)
                    dd.consume_where(lanes, r, cum, freq)
                    seen[ch] |= off
                nb = np.where(off, nbits[:, t, ch], 0)
                jv = dd.raw(nb) if nb.any() else zeros
                dd.bad |= off & (jv > room[:, t, ch])
                jit[:, t, ch] = np.where(off, jv + 1, 0)
        for ch, lanes in sends.items():
            if lanes is not None:  # a frame flag that promised an off reading and none came
                dd.bad |= lanes & ~seen[ch]
        val = self.from_index(x, jit)
        out = np.abs(val) >= Q_LIMIT
        if out.any():
            dd.bad |= out.any(axis=(1, 2))
            val = np.where(out, 0, val)
        return val

    # ------------------------------------------------------------------ values, generation, gaps
    def values(self, q: np.ndarray) -> np.ndarray:
        """Quantised samples → physical values at the schema's resolution."""
        return self.schema.values(q)

    def generate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n × C synthetic quantised samples drawn from the predictor and residual tables."""
        if n < 0:
            raise CodecError("sample count must be ≥ 0")
        from gateway.codec import generate  # time structure learned at training (newer files)

        if generate.time_model(self) is not None:
            return generate.generate(self, n, rng)[0]
        p = self.params
        c = p.channels
        x = np.zeros((n, c), dtype=np.int64)
        prev_d = np.zeros(c, dtype=np.int64)
        # Sample from the learned part of each table only: the floor of 1 every symbol gets (so
        # that any residual stays codable) is not evidence and would inject wild jumps.
        learned = np.maximum(p.freq - 1, 0).astype(np.float64)
        learned[learned.sum(axis=-1) == 0] = 1.0
        probs = learned / learned.sum(axis=-1, keepdims=True)
        jlearned = np.maximum(p.jfreq - 1, 0).astype(np.float64)
        jlearned[jlearned.sum(axis=-1) == 0] = 1.0
        jprobs = jlearned / jlearned.sum(axis=-1, keepdims=True)
        # Mean reversion for synthesis only (not part of the bitstream): keeps a long run at the
        # training data's spread instead of wandering off like a random walk.
        gen = self.meta.get("generation") or {}
        mean = np.asarray(gen.get("mean", self.from_index(p.base)), dtype=np.float64)
        # On a lattice channel this walks the indices (as the predictor does) and maps back at the end.
        mean = self.to_index(np.rint(mean).astype(np.int64))[0].astype(np.float64)
        rev = np.asarray(gen.get("reversion", np.zeros(c)), dtype=np.float64)
        lo, hi = self.to_index(p.lo)[0], self.to_index(p.hi)[0]
        for t in range(n):
            cur_d = np.zeros(c, dtype=np.int64)
            for ch in range(c):
                if t == 0:
                    tb = 0
                    pr = p.base[ch] + ((int((x[0] - p.base) @ p.a0[ch]) + HALF) >> SHIFT)
                else:
                    tb = 1 if t == 1 else 2 + int(activity_bucket(prev_d[ch : ch + 1], p.thr[ch])[0])
                    acc = int(prev_d @ p.a1[ch] + cur_d @ p.a2[ch] + p.lev[ch] * (x[t - 1, ch] - p.base[ch]))
                    delta = (acc + HALF) >> SHIFT
                    if p.pmode[ch] & PMODE_SNAP:
                        delta = int(snap_delta(np.int64(delta), p.grid[ch]))
                    pr = x[t - 1, ch] + delta
                sym = rng.choice(tables.NSYM, p=probs[ch, tb])
                k = int(p.shift[ch, tb])
                if tb == 0 and k >= tables.WINDOW:  # windowed bins; an escape lands just outside
                    k -= tables.WINDOW
                    nb = 0 if sym in (tables.ESC_LOW, tables.ESC_HIGH) else k
                    raw = int(rng.integers(0, 1 << nb)) if nb else 0
                    resid = tables.first_from_symbols(np.int64(sym), np.int64(raw), np.int64(0), np.int64(k))
                else:
                    nb = int(tables.raw_bits(np.int64(sym), k))
                    raw = int(rng.integers(0, 1 << nb)) if nb else 0
                    resid = tables.from_symbols(np.int64(sym), np.int64(raw), np.int64(k))
                if p.grid[ch] != GRID_ONE:
                    ph = jitter_phase(np.int64(pr), np.int64(resid), p.grid[ch], p.pmode[ch])
                    js = rng.choice(tables.NSYM, p=jprobs[ch, int(ph)])
                    jn = int(tables.raw_bits(np.int64(js), 0))
                    jr = int(rng.integers(0, 1 << jn)) if jn else 0
                    resid = grid_value(resid, p.grid[ch]) + tables.from_symbols(np.int64(js), np.int64(jr), 0)
                if t and resid:  # pull only on steps that move: exact repeats stay repeats
                    resid += round(-rev[ch] * (x[t - 1, ch] - mean[ch]))
                val = int(pr + resid)
                val = min(max(val, int(lo[ch])), int(hi[ch]))
                x[t, ch] = val
                if t:
                    cur_d[ch] = val - x[t - 1, ch]
            prev_d = cur_d
        return self.from_index(x)

    def fill_gap(
        self,
        history: np.ndarray,
        missing: int,
        after: np.ndarray | None = None,
        end_time: float | None = None,
    ) -> np.ndarray:
        """Estimates (missing × C quantised) for samples lost between ``history`` and ``after``.

        With time structure (newer weight files): the AR bridge of :mod:`gateway.codec.fill`, where
        ``after`` may hold several rows and ``end_time`` (epoch s of the last row given) sets the
        hour of day. Otherwise follows the predictor with zero residuals from the last known
        sample; when the first sample after the gap is known, the drift is bent linearly to meet it.
        """
        from gateway.codec import fill

        if fill.time_model(self) is not None:
            return fill.fill_gap(self, history, missing, after, end_time)
        p = self.params
        hist = self.to_index(np.asarray(history, dtype=np.int64).reshape(-1, p.channels))[0]
        lo, hi = self.to_index(p.lo)[0], self.to_index(p.hi)[0]
        if len(hist) == 0:
            raise CodecError("gap filling needs at least one known sample before the gap")
        if missing <= 0:
            return np.zeros((0, p.channels), dtype=np.int64)
        last = hist[-1].copy()
        prev_d = hist[-1] - hist[-2] if len(hist) > 1 else np.zeros(p.channels, dtype=np.int64)
        out = np.zeros((missing, p.channels), dtype=np.int64)
        for t in range(missing):
            cur_d = np.zeros(p.channels, dtype=np.int64)
            for ch in range(p.channels):
                acc = int(prev_d @ p.a1[ch] + cur_d @ p.a2[ch] + p.lev[ch] * (last[ch] - p.base[ch]))
                cur_d[ch] = (acc + HALF) >> SHIFT
            last = np.clip(last + cur_d, lo, hi)
            out[t] = last
            prev_d = cur_d
        if after is not None:
            target = self.to_index(np.asarray(after, dtype=np.int64).reshape(-1, p.channels)[0])[0]
            nxt = np.clip(last + prev_d, lo, hi)  # where the path would be one step later
            ramp = np.arange(1, missing + 1)[:, None] / (missing + 1)
            out = np.rint(out + ramp * (target - nxt)).astype(np.int64)
        return self.from_index(out)


class _SubDecoder:
    """A view of some lanes of a BatchDecoder (frames with the same sample count)."""

    __slots__ = ("dec", "lanes", "size")

    def __init__(self, dec: BatchDecoder, lanes: np.ndarray) -> None:
        sub = BatchDecoder.__new__(BatchDecoder)
        sub.data = dec.data[lanes]
        sub.lanes = np.arange(len(lanes))
        sub.code = dec.code[lanes].copy()
        sub.pos = dec.pos[lanes].copy()
        sub.range = dec.range[lanes].copy()
        sub.max_pos = dec.max_pos
        sub.bad = dec.bad[lanes].copy()
        sub.flat = sub.data.ravel()
        sub.row = sub.lanes * sub.data.shape[1]
        self.dec = sub
        self.lanes = lanes
        self.size = len(lanes)

    def target(self) -> tuple[np.ndarray, np.ndarray]:
        return self.dec.target()

    def consume(self, r: np.ndarray, cum: np.ndarray, freq: np.ndarray) -> None:
        self.dec.consume(r, cum, freq)

    def raw(self, nbits: np.ndarray) -> np.ndarray:
        return self.dec.raw(nbits)
