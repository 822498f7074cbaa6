"""Residual ↔ symbol binning and the static frequency tables of the residual coder.

A residual ``r`` is zigzagged (``z = 2r`` for r ≥ 0, ``-2r-1`` otherwise). Each table has a
learned shift ``k``: ``z < 4`` are exact symbols 0..3; above, ``y = z - 4`` falls into 28 linear
bins of width ``2**k`` (symbols 4..31, ``k`` raw bits) and then into exponential bins (symbols
32..63: bin ``e`` holds ``2**e`` linear-bin widths, ``e + k`` raw bits). 64 symbols in all.
"""

from __future__ import annotations

import numpy as np

from gateway.codec.rangecoder import PROB_TOTAL

EXACT = 4
LINEAR = 28
NSYM = 64
MAX_SHIFT = 20


def zigzag(r: np.ndarray) -> np.ndarray:
    return np.where(r >= 0, 2 * r, -2 * r - 1)


def unzigzag(z: np.ndarray) -> np.ndarray:
    return (z >> 1) ^ -(z & 1)


def _bitlen(v: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values (exact for v < 2**53 via frexp)."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def to_symbols(r: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals and per-element shifts → (symbol, raw value, raw bit count)."""
    r = np.asarray(r, dtype=np.int64)
    k = np.broadcast_to(np.asarray(k, dtype=np.int64), r.shape)
    z = zigzag(r)
    y = np.maximum(z - EXACT, 0)
    q = y >> k
    low = y & ((1 << k) - 1)
    m = np.maximum(q - LINEAR, 0)
    e = _bitlen(m + 1) - 1
    exact = z < EXACT
    linear = ~exact & (q < LINEAR)
    sym = np.where(exact, z, np.where(linear, EXACT + q, EXACT + LINEAR + e))
    nraw = np.where(exact, 0, np.where(linear, k, e + k))
    raw = np.where(exact, 0, np.where(linear, low, ((m + 1 - (1 << e)) << k) | low))
    return sym, raw, nraw


def raw_bits(sym: np.ndarray, k: np.ndarray) -> np.ndarray:
    """How many raw bits follow a symbol."""
    return np.where(sym < EXACT, 0, np.where(sym < EXACT + LINEAR, k, sym - EXACT - LINEAR + k))


def symbol_base(k: int) -> np.ndarray:
    """z at raw value 0 for each of the 64 symbols: z = symbol_base[sym] + raw for every symbol."""
    sym = np.arange(NSYM, dtype=np.int64)
    e = np.maximum(sym - EXACT - LINEAR, 0)
    q = np.where(sym < EXACT + LINEAR, sym - EXACT, LINEAR + (1 << e) - 1)
    return np.where(sym < EXACT, sym, EXACT + (q << k))


def from_symbols(sym: np.ndarray, raw: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_symbols`."""
    lin = sym < EXACT + LINEAR
    e = np.maximum(sym - EXACT - LINEAR, 0)
    q = np.where(lin, sym - EXACT, LINEAR + (1 << e) - 1 + (raw >> k))
    low = np.where(lin, raw, raw & ((1 << k) - 1))
    z = np.where(sym < EXACT, sym, EXACT + ((q << k) | low))
    return unzigzag(z)


def quantise_freqs(counts: np.ndarray) -> np.ndarray:
    """Counts over the 64 symbols → frequencies summing to 4096, every symbol at least 1."""
    counts = np.asarray(counts, dtype=np.float64)
    spare = PROB_TOTAL - NSYM
    total = counts.sum()
    f = np.ones(NSYM, dtype=np.int64)
    if total > 0:
        f += np.floor(counts * spare / total).astype(np.int64)
    f[np.argmax(f)] += PROB_TOTAL - int(f.sum())
    return f


def cumulative(freq: np.ndarray) -> np.ndarray:
    """Frequencies (..., 64) → cumulative (..., 65)."""
    shape = (*freq.shape[:-1], 1)
    return np.concatenate([np.zeros(shape, dtype=np.int64), np.cumsum(freq, axis=-1)], axis=-1)


def lookup(freq: np.ndarray) -> np.ndarray:
    """Frequencies (..., 64) → symbol of each of the 4096 slots (..., 4096), uint8."""
    flat = freq.reshape(-1, NSYM)
    out = np.empty((flat.shape[0], PROB_TOTAL), dtype=np.int64)
    for i, f in enumerate(flat):
        out[i] = np.repeat(np.arange(NSYM), f)
    return out.reshape((*freq.shape[:-1], PROB_TOTAL))


def cost_bits(counts: np.ndarray, freq: np.ndarray) -> float:
    """Bits to code symbols with these counts under ``freq`` (excluding raw bits)."""
    return float(-(counts * np.log2(freq / PROB_TOTAL)).sum())


# ---------------------------------------------------------------------- the first sample's table
# A frame's first sample has no earlier sample to follow: its residual from the prior (``base`` plus
# the cross-channel term) spans the channel's whole range, often skewed, where the zigzag bins pay a
# sign bit the table cannot learn. Table 0 may therefore bin it directly (the trainer picks, per
# channel, whichever codes its training data cheaper): a window of 62 learned bins of width 2**s
# centred on the prior (symbols 1..62, then s raw bits), and an escape on each side (symbol 0 below,
# 63 above) followed by a tail: 5 raw bits e, then e raw bits (distance past the window =
# 2**e - 1 + bits).
WINDOW = 32  # table 0's shift = WINDOW + s selects this binning; below WINDOW, the zigzag one
FIRST_BINS = 62
FIRST_HALF = 31
ESCAPE_BITS = 5
ESC_LOW = 0
ESC_HIGH = 63


def first_to_symbols(
    v: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First-sample residuals and shifts → (symbol, raw, raw bits, tail, tail bits)."""
    v = np.asarray(v, dtype=np.int64)
    s = np.broadcast_to(np.asarray(s, dtype=np.int64), v.shape)
    w = v + (FIRST_HALF << s)
    width = FIRST_BINS << s
    below, above = w < 0, w >= width
    inside = ~below & ~above
    a = np.where(below, -w - 1, np.where(above, w - width, 0))
    e = _bitlen(a + 1) - 1
    sym = np.where(below, ESC_LOW, np.where(above, ESC_HIGH, 1 + (np.maximum(w, 0) >> s)))
    raw = np.where(inside, w & ((1 << s) - 1), e)
    nraw = np.where(inside, s, ESCAPE_BITS)
    tail = np.where(inside, 0, a + 1 - (1 << e))
    ntail = np.where(inside, 0, e)
    return sym, raw, nraw, tail, ntail


def first_from_symbols(sym: np.ndarray, raw: np.ndarray, tail: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Inverse of :func:`first_to_symbols` (``raw`` is e for the escapes)."""
    sym = np.asarray(sym, dtype=np.int64)
    raw = np.asarray(raw, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    e = np.where((sym == ESC_LOW) | (sym == ESC_HIGH), raw, 0)
    a = (1 << e) - 1 + tail
    w = np.where(
        sym == ESC_LOW, -a - 1, np.where(sym == ESC_HIGH, (FIRST_BINS << s) + a, ((sym - 1) << s) + raw)
    )
    return w - (FIRST_HALF << s)


def first_raw_bits(sym: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Raw bits right after a first-sample symbol (the tail, for escapes, follows separately)."""
    sym = np.asarray(sym)
    return np.where((sym == ESC_LOW) | (sym == ESC_HIGH), ESCAPE_BITS, s)
