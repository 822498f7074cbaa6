"""Single-frame decoder on plain Python ints: the gateway's per-packet path.

numpy pays a fixed cost per operation, which dominates when one frame arrives at a time; this
walks the same bitstream (docs/codec.md) with precomputed lists. ``Model.decode_many`` uses the
numpy lanes for batches; tests check both against an independent reference.

The inner loop is written for few Python operations and branches per value: one call per symbol,
binning by table lookup (``z = z0[sym] + raw bits``), branch-free zigzag, the activity bucket by
``bisect``, sparse predictor weights, range checks as one shift, and a cut-short payload refused at
the first sample that needs more bytes than it holds. That keeps the gateway's per-packet cost low
and the coverage-instrumented fuzz target (bench/fuzz.py, which pays for every branch and
comparison) fast.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gateway.codec import tables
from gateway.codec.errors import PayloadError
from gateway.codec.rangecoder import PROB_BITS, PROB_TOTAL

if TYPE_CHECKING:
    from gateway.codec.model import Params

_LIMIT = 1 << 30
_LIMIT_BITS = 30
_WINDOW = tables.WINDOW
# A value (symbol ≤ 2 bytes, ≤ 51 raw bits in ≤ 4 chunks of ≤ 2 bytes, jitter symbol and ≤ 31 bits)
# reads at most 16 bytes; the decoder checks "cut short" before every sample, so padding the payload
# with this many zero bytes (what a decoder reads past the end) covers one sample of any input.
_VALUE_BYTES = 16

# (freq, cum, lut, z0, nraw): one static table. A symbol ``sym`` stands for the zigzagged residual
# z0[sym] + nraw[sym] raw bits (tables.symbol_base / tables.raw_bits at the table's shift).
Bins = tuple[list[int], list[int], bytes, list[int], bytes]


@dataclass(frozen=True, slots=True)
class ScalarTables:
    """The model's parameters as plain lists, built once per model."""

    spf: int
    base: list[int]
    a0: list[list[tuple[int, int]]]  # per channel, the (j, weight) pairs of nonzero weights
    a1: list[list[tuple[int, int]]]
    a2: list[list[tuple[int, int]]]
    lev: list[int]
    thr: list[list[int]]
    first: list[Bins]  # table 0 of each channel (zigzag binning; unused where window >= 0)
    window: list[int]  # table 0's window shift s (tables.first_to_symbols), or -1 for zigzag
    second: list[Bins]  # table 1
    later: list[list[Bins]]  # tables 2 + activity bucket
    grid: list[int]
    jitter: list[list[Bins] | None]  # by lattice phase; None where the channel has no grid
    pmode: list[int]  # model.PMODE_*: bit 0 snap the change onto the grid, bit 1 phase by the lattice
    own: list[int]  # activity weights (model.activity): the channel's own last change
    cross: list[list[tuple[int, int]]]  # ... and the residuals of channels coded before it this step
    count_freq: list[int]
    count_cum: list[int]
    # (channel, P, Q, D, mode, split, G) of each lattice channel (lattice.py; split = 4096 − the
    # off-lattice flag's frequency, G the frame flag's or 0), in channel order; empty before revision 6
    lattice: list[tuple[int, int, int, int, int, int, int]]


def _bins(freq: np.ndarray, cum: np.ndarray, lut: np.ndarray, k: int | None) -> Bins:
    """k: the table's zigzag binning shift; None for the windowed first-sample table, whose raw
    bits the caller reads (z0[sym] is then sym itself, with no raw bits)."""
    sym = np.arange(tables.NSYM)
    return (
        freq.tolist(),
        cum[: tables.NSYM].tolist(),
        bytes(lut.astype("uint8")),
        sym.tolist() if k is None else tables.symbol_base(k).tolist(),
        bytes(tables.NSYM) if k is None else bytes(tables.raw_bits(sym, k).astype("uint8")),
    )


def build(
    params: Params,
    spf: int,
    count_freq: np.ndarray,
    count_cum: np.ndarray,
    cum: np.ndarray,
    lut: np.ndarray,
    jcum: np.ndarray,
    jlut: np.ndarray,
) -> ScalarTables:
    shift = params.shift.tolist()
    chans = range(params.channels)

    def sparse(m: np.ndarray) -> list[list[tuple[int, int]]]:
        return [[(j, int(w)) for j, w in enumerate(row) if w] for row in m.tolist()]

    def table(c: int, tab: int) -> Bins:
        k = shift[c][tab]
        return _bins(params.freq[c, tab], cum[c, tab], lut[c, tab], k if k < _WINDOW else None)

    jitter: list[list[Bins] | None] = [
        None
        if g == 256
        else [_bins(params.jfreq[c, ph], jcum[c, ph], jlut[c, ph], 0) for ph in range(params.jfreq.shape[1])]
        for c, g in zip(chans, params.grid.tolist(), strict=True)
    ]
    return ScalarTables(
        spf=spf,
        base=params.base.tolist(),
        a0=sparse(params.a0),
        a1=sparse(params.a1),
        a2=sparse(params.a2),
        lev=params.lev.tolist(),
        thr=params.thr.tolist(),
        first=[table(c, 0) for c in chans],
        window=[k - _WINDOW if k >= _WINDOW else -1 for k in (row[0] for row in shift)],
        second=[table(c, 1) for c in chans],
        later=[[table(c, tab) for tab in range(2, len(shift[c]))] for c in chans],
        grid=params.grid.tolist(),
        jitter=jitter,
        pmode=params.pmode.tolist(),
        own=np.diagonal(params.actw).tolist(),
        cross=sparse(np.tril(params.actw, -1)),
        count_freq=count_freq.tolist(),
        count_cum=count_cum.tolist(),
        lattice=[
            (c, p, q, d, mode, PROB_TOTAL - f, g)
            for c, ((p, q, d, mode, f), g) in enumerate(
                zip(params.vmap.tolist(), params.vframe.tolist(), strict=True)  # type: ignore[union-attr]
            )
            if mode
        ],
    )


def _on_lattice(k: int, p: int, q: int, d: int, mode: int) -> int:
    """lattice.value for one plain int: floor, or (mode 2) truncation toward zero, of (p·k + q) / d."""
    n = p * k + q
    return -((-n) // d) if n < 0 and mode == 2 else n // d


def decode(t: ScalarTables, payload: bytes, key: str) -> list[list[int]]:
    length = len(payload)
    c_n = len(t.base)
    # Reads past the end are zeros (the encoder drops trailing zero bytes).
    data = bytes(payload) + bytes(8 + _VALUE_BYTES * c_n)
    code = int.from_bytes(data[:4], "big")
    pos = 4
    rng = 0xFFFFFFFF
    bad = f"payload does not decode under model {key}"
    impossible = f"{bad}: impossible coder state"

    # Symbol count.
    r = rng >> PROB_BITS
    v = code // r
    if v >= PROB_TOTAL:
        raise PayloadError(impossible)
    s = v - (PROB_TOTAL - 64) + 1 if v >= PROB_TOTAL - 64 else 0
    code -= r * t.count_cum[s]
    rng = r * t.count_freq[s]
    while rng < 1 << 24:
        code = (code << 8) | data[pos]
        pos += 1
        rng <<= 8
    n = t.spf if s == 0 else s

    def bits(nraw: int) -> int:
        """``nraw`` raw bits, in chunks of at most 16, most significant first."""
        nonlocal code, rng, pos
        raw = 0
        while nraw:
            m = min(nraw, 16)
            nraw -= m
            r = rng >> m
            cv = code // r
            if cv >> m:
                raise PayloadError(impossible)
            code -= r * cv
            raw = (raw << m) | cv
            while r < 1 << 24:
                code = (code << 8) | data[pos]
                pos += 1
                r <<= 8
            rng = r
        return raw

    def symbol(b: Bins) -> int:
        """One table symbol, with its raw bits: the zigzagged value."""
        nonlocal code, rng, pos
        freq, cum, lut, z0, nraw = b
        r = rng >> PROB_BITS
        v = code // r
        if v >> PROB_BITS:  # code ≥ 4096·r: no encoder reaches this state
            raise PayloadError(impossible)
        sym = lut[v]
        code -= r * cum[sym]
        r *= freq[sym]
        # range ≥ 2**12 after a symbol: 0..2 bytes bring it back to ≥ 2**24.
        while r < 1 << 24:
            code = (code << 8) | data[pos]
            pos += 1
            r <<= 8
        rng = r
        nb = nraw[sym]
        return z0[sym] + bits(nb) if nb else z0[sym]

    def first_window(b: Bins, s: int) -> int:
        """A first-sample residual: windowed bin + s raw bits, or an escape and its tail."""
        sym = symbol(b)  # the windowed table's z0[sym] is sym, with no raw bits (see _bins)
        if sym == tables.ESC_LOW or sym == tables.ESC_HIGH:
            e = bits(tables.ESCAPE_BITS)
            a = (1 << e) - 1 + bits(e)
            w = -a - 1 if sym == tables.ESC_LOW else (tables.FIRST_BINS << s) + a
        else:
            w = ((sym - 1) << s) + bits(s)
        return w - (tables.FIRST_HALF << s)

    base, grid, jitter, pmode = t.base, t.grid, t.jitter, t.pmode
    lim = length + 4  # pos beyond this: the symbols already need more bytes than the payload has
    cut_short = f"{bad}: cut short ({length} B, its symbols need more)"
    x: list[list[int]] = []
    cur = [0] * c_n
    off = [0] * c_n  # first sample's offsets from base (0 for channels not decoded yet)
    for c in range(c_n):
        acc = 0
        for j, w in t.a0[c]:  # trained weights are sparse: most rows are empty
            acc += w * off[j]
        pred = base[c] + ((acc + 2048) >> 12)
        if abs(pred) >> _LIMIT_BITS:  # rare: clamp to ±2**30
            pred = min(max(pred, -_LIMIT), _LIMIT)
        s = t.window[c]
        if s < 0:
            z = symbol(t.first[c])
            resid = (z >> 1) ^ -(z & 1)
        else:
            resid = first_window(t.first[c], s)
        jt = jitter[c]
        if jt:  # jitter table by the lattice phase of the grid index (model.grid_phase)
            g = grid[c]
            # model.PMODE_LATTICE_PHASE (pmode & 2): the phase within one grid period instead
            ph = ((((pred << 8) + resid * g) % g) << 2) // g if pmode[c] & 2 else ((resid * g) & 255) >> 6
            z = symbol(jt[ph])
            resid = ((resid * g + 128) >> 8) + ((z >> 1) ^ -(z & 1))
        value = pred + resid
        if abs(value) >> _LIMIT_BITS:
            raise PayloadError(bad)
        cur[c] = value
        off[c] = value - base[c]
    x.append(cur)
    prev, prev_d = cur, [0] * c_n
    lev, a1, a2, thr, second, later = t.lev, t.a1, t.a2, t.thr, t.second, t.later
    own, cross = t.own, t.cross
    for step in range(1, n):
        if pos > lim:
            raise PayloadError(cut_short)
        late = step > 1
        cur = [0] * c_n
        cur_d = [0] * c_n
        cur_r = [0] * c_n  # min(|residual|, 65535) of the channels coded at this step
        for c in range(c_n):
            p = prev[c]
            acc = lev[c] * (p - base[c])
            for j, w in a1[c]:
                acc += w * prev_d[j]
            for j, w in a2[c]:
                acc += w * cur_d[j]
            delta = (acc + 2048) >> 12
            pm = pmode[c]
            if pm & 1:  # model.PMODE_SNAP: the change rounded onto the grid
                g = grid[c]
                delta = ((((delta << 8) + (g >> 1)) // g) * g + 128) >> 8
            pred = p + delta
            if abs(pred) >> _LIMIT_BITS:  # rare: clamp to ±2**30
                pred = min(max(pred, -_LIMIT), _LIMIT)
            if late:  # activity (model.activity): own change, plus residuals coded at this step
                a = own[c] * abs(prev_d[c])
                for j, w in cross[c]:
                    a += w * cur_r[j]
                z = symbol(later[c][bisect_left(thr[c], a)])
            else:
                z = symbol(second[c])
            resid = (z >> 1) ^ -(z & 1)
            jt = jitter[c]
            if jt:
                g = grid[c]
                ph = ((((pred << 8) + resid * g) % g) << 2) // g if pm & 2 else ((resid * g) & 255) >> 6
                z = symbol(jt[ph])
                resid = ((resid * g + 128) >> 8) + ((z >> 1) ^ -(z & 1))
            value = pred + resid
            if abs(value) >> _LIMIT_BITS:
                raise PayloadError(bad)
            cur[c] = value
            cur_d[c] = value - p
            r = value - pred
            cur_r[c] = min(r if r >= 0 else -r, 65535)
        x.append(cur)
        prev, prev_d = cur, cur_d
    # Revision 6: per sample and lattice channel an off-lattice flag, then the jitter's raw bits;
    # the decoded values are lattice indices until here. Revision 7: before them, the frame flag of
    # each lattice channel that has one; "all on" means no per-reading flags for that channel.
    sent = []
    for c, lp, lq, ld, mode, split, g in t.lattice:
        some = True
        if g:
            r = rng >> PROB_BITS
            v = code // r
            if v >> PROB_BITS:
                raise PayloadError(impossible)
            gs = PROB_TOTAL - g
            some = v >= gs
            if some:
                code -= r * gs
                r *= g
            else:
                r *= gs
            while r < 1 << 24:
                code = (code << 8) | data[pos]
                pos += 1
                r <<= 8
            rng = r
        sent.append((c, lp, lq, ld, mode, split, g, some))
    promised = {c for c, *_rest, g, some in sent if g and some}
    for row in x if t.lattice else ():
        if pos > lim:
            raise PayloadError(cut_short)
        for c, lp, lq, ld, mode, split, _g, some in sent:
            if not some:  # all on the lattice: the reading is L(k)
                low = _on_lattice(row[c], lp, lq, ld, mode)
                if abs(low) >> _LIMIT_BITS:
                    raise PayloadError(bad)
                row[c] = low
                continue
            r = rng >> PROB_BITS
            v = code // r
            if v >> PROB_BITS:
                raise PayloadError(impossible)
            k = row[c]
            low = _on_lattice(k, lp, lq, ld, mode)
            if v >= split:
                code -= r * split
                r *= PROB_TOTAL - split
                while r < 1 << 24:
                    code = (code << 8) | data[pos]
                    pos += 1
                    r <<= 8
                rng = r
                g = _on_lattice(k + 1, lp, lq, ld, mode) - low
                nb = (g - 2).bit_length()
                jv = bits(nb) if nb else 0
                if jv > g - 2:
                    raise PayloadError(f"{bad}: jitter past the next lattice value")
                low += jv + 1
                promised.discard(c)
            else:
                r *= split
                while r < 1 << 24:
                    code = (code << 8) | data[pos]
                    pos += 1
                    r <<= 8
                rng = r
            if abs(low) >> _LIMIT_BITS:
                raise PayloadError(bad)
            row[c] = low
    if promised:
        raise PayloadError(f"{bad}: a frame flag promised a reading off the lattice and none came")
    # The encoder writes the bytes emitted while coding plus at most two (trailing zeros dropped,
    # never below the emitted ones): more is not this model's payload, fewer a truncated one.
    if length > pos - 4 + 2:
        raise PayloadError(f"{bad}: {length - pos + 2} bytes too many")
    if pos > lim:
        raise PayloadError(cut_short)
    return x
