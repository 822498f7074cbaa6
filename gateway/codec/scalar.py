"""Single-frame decoder on plain Python ints: the gateway's per-packet path.

numpy pays a fixed cost per operation, which dominates when one frame arrives at a time; this
walks the same bitstream (docs/codec.md) with precomputed lists. ``Model.decode_many`` uses the
numpy lanes for batches; tests check both against an independent reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gateway.codec import tables
from gateway.codec.errors import PayloadError
from gateway.codec.rangecoder import PROB_BITS, PROB_TOTAL

if TYPE_CHECKING:
    from gateway.codec.model import Params

_TOP = 1 << 24
_LIMIT = 1 << 30
_WINDOW = tables.WINDOW


@dataclass(frozen=True, slots=True)
class ScalarTables:
    """The model's parameters as nested lists, built once per model."""

    spf: int
    base: list[int]
    a0: list[list[tuple[int, int]]]
    a1: list[list[tuple[int, int]]]
    a2: list[list[tuple[int, int]]]
    lev: list[int]
    thr: list[list[int]]
    shift: list[list[int]]
    freq: list[list[list[int]]]
    cum: list[list[list[int]]]
    lut: list[list[bytes]]
    grid: list[int]
    jfreq: list[list[list[int]]]
    jcum: list[list[list[int]]]
    jlut: list[list[bytes]]
    pmode: list[int]
    own: list[int]
    cross: list[list[tuple[int, int]]]
    count_freq: list[int]
    count_cum: list[int]


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
    def sparse(m: np.ndarray) -> list[list[tuple[int, int]]]:
        return [[(j, int(w)) for j, w in enumerate(row) if w] for row in m.tolist()]

    return ScalarTables(
        spf=spf,
        base=params.base.tolist(),
        a0=sparse(params.a0),
        a1=sparse(params.a1),
        a2=sparse(params.a2),
        lev=params.lev.tolist(),
        thr=params.thr.tolist(),
        shift=params.shift.tolist(),
        freq=params.freq.tolist(),
        cum=cum.tolist(),
        lut=[[bytes(t.astype("uint8")) for t in ch] for ch in lut],
        grid=params.grid.tolist(),
        jfreq=params.jfreq.tolist(),
        jcum=jcum.tolist(),
        jlut=[[bytes(t.astype("uint8")) for t in ch] for ch in jlut],
        pmode=params.pmode.tolist(),
        own=np.diagonal(params.actw).tolist(),
        cross=sparse(np.tril(params.actw, -1)),
        count_freq=count_freq.tolist(),
        count_cum=count_cum.tolist(),
    )


def decode(t: ScalarTables, payload: bytes, key: str) -> list[list[int]]:
    # Reads past the end are zeros (the encoder drops trailing zero bytes); a value (symbol, up to
    # 51 raw bits, jitter symbol and bits) consumes at most 14 bytes, so this padding covers any
    # input, corrupted or not.
    data = bytes(payload) + bytes(8 + 16 * 65 * len(t.base))
    length = len(payload)
    code = int.from_bytes(data[:4], "big")
    pos = 4
    rng = 0xFFFFFFFF

    # Symbol count.
    r = rng >> PROB_BITS
    v = code // r
    if v >= PROB_TOTAL:
        raise PayloadError(f"payload does not decode under model {key}: impossible coder state")
    s = v - (PROB_TOTAL - 64) + 1 if v >= PROB_TOTAL - 64 else 0
    code -= r * t.count_cum[s]
    rng = r * t.count_freq[s]
    while rng < _TOP:
        code = (code << 8) | data[pos]
        pos += 1
        rng <<= 8
    n = t.spf if s == 0 else s

    def symbol(freq: list[int], cum: list[int], lut: bytes) -> int:
        """One table symbol."""
        nonlocal code, rng, pos
        r = rng >> PROB_BITS
        v = code // r
        if v >= PROB_TOTAL:  # code ≥ 4096·r: no encoder reaches this state
            raise PayloadError(f"payload does not decode under model {key}: impossible coder state")
        sym = lut[v]
        code -= r * cum[sym]
        rng = r * freq[sym]
        while rng < _TOP:
            code = (code << 8) | data[pos]
            pos += 1
            rng <<= 8
        return sym

    def read(freq: list[int], cum: list[int], lut: bytes, k: int) -> int:
        """One binned value: table symbol, then its raw bits."""
        sym = symbol(freq, cum, lut)
        if sym < tables.EXACT:
            z = sym
        else:
            raw = bits(k if sym < tables.EXACT + tables.LINEAR else sym - 32 + k)
            if sym < tables.EXACT + tables.LINEAR:
                z = tables.EXACT + (((sym - tables.EXACT) << k) | raw)
            else:
                q = tables.LINEAR + (1 << (sym - 32)) - 1 + (raw >> k)
                z = tables.EXACT + ((q << k) | (raw & ((1 << k) - 1)))
        return z >> 1 if not z & 1 else -((z + 1) >> 1)

    def bits(nraw: int) -> int:
        """``nraw`` raw bits, in chunks of at most 16, most significant first."""
        nonlocal code, rng, pos
        raw = 0
        while nraw > 0:
            m = 16 if nraw > 16 else nraw
            nraw -= m
            r = rng >> m
            cv = code // r
            if cv >> m:
                raise PayloadError(f"payload does not decode under model {key}: impossible coder state")
            code -= r * cv
            rng = r
            raw = (raw << m) | cv
            while rng < _TOP:
                code = (code << 8) | data[pos]
                pos += 1
                rng <<= 8
        return raw

    def read_first(freq: list[int], cum: list[int], lut: bytes, s: int) -> int:
        """A first-sample residual: windowed bin + s raw bits, or an escape and its tail."""
        sym = symbol(freq, cum, lut)
        if sym == tables.ESC_LOW or sym == tables.ESC_HIGH:
            e = bits(tables.ESCAPE_BITS)
            a = (1 << e) - 1 + bits(e)
            w = -a - 1 if sym == tables.ESC_LOW else (tables.FIRST_BINS << s) + a
        else:
            w = ((sym - 1) << s) + bits(s)
        return w - (tables.FIRST_HALF << s)

    c_n = len(t.base)
    x: list[list[int]] = []
    prev = [0] * c_n
    prev_d = [0] * c_n
    for step in range(n):
        cur = [0] * c_n
        cur_d = [0] * c_n
        cur_r = [0] * c_n  # min(|residual|, 65535) of the channels coded at this step
        for c in range(c_n):
            if step == 0:
                acc = 0
                for j, w in t.a0[c]:
                    acc += w * (cur[j] - t.base[j])
                pred = t.base[c] + ((acc + 2048) >> 12)
                tab = 0
            else:
                acc = t.lev[c] * (prev[c] - t.base[c])
                for j, w in t.a1[c]:
                    acc += w * prev_d[j]
                for j, w in t.a2[c]:
                    acc += w * cur_d[j]
                delta = (acc + 2048) >> 12
                if t.pmode[c] & 1:  # model.PMODE_SNAP: the change rounded onto the grid
                    g = t.grid[c]
                    delta = ((((delta << 8) + (g >> 1)) // g) * g + 128) >> 8
                pred = prev[c] + delta
                if step == 1:
                    tab = 1
                else:
                    a = t.own[c] * abs(prev_d[c])  # activity (model.activity)
                    for j, w in t.cross[c]:
                        a += w * cur_r[j]
                    tab = 2
                    for th in t.thr[c]:
                        if a > th:
                            tab += 1
            pred = -_LIMIT if pred < -_LIMIT else (_LIMIT if pred > _LIMIT else pred)
            k = t.shift[c][tab]
            if k < _WINDOW:
                resid = read(t.freq[c][tab], t.cum[c][tab], t.lut[c][tab], k)
            else:
                resid = read_first(t.freq[c][0], t.cum[c][0], t.lut[c][0], k - _WINDOW)
            g = t.grid[c]
            if g != 256:  # jitter table by the lattice phase of the grid index (model.grid_phase)
                # model.PMODE_LATTICE_PHASE (pmode & 2): the phase within one grid period instead
                lat = t.pmode[c] & 2
                ph = ((((pred << 8) + resid * g) % g) << 2) // g if lat else ((resid * g) & 255) >> 6
                resid = ((resid * g + 128) >> 8) + read(t.jfreq[c][ph], t.jcum[c][ph], t.jlut[c][ph], 0)
            value = pred + resid
            if not -_LIMIT < value < _LIMIT:
                raise PayloadError(f"payload does not decode under model {key}")
            cur[c] = value
            cur_r[c] = min(abs(value - pred), 65535)
            if step:
                cur_d[c] = value - prev[c]
        x.append(cur)
        prev, prev_d = cur, cur_d
    # The encoder writes the bytes emitted while coding plus at most two (trailing zeros dropped,
    # never below the emitted ones): more is not this model's payload, fewer a truncated one.
    if length > pos - 4 + 2:
        raise PayloadError(f"payload does not decode under model {key}: {length - pos + 2} bytes too many")
    if length < pos - 4:
        raise PayloadError(f"payload does not decode under model {key}: cut short ({length} of {pos - 4} B)")
    return x
