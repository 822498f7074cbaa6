"""A 32-bit range coder with 12-bit static frequency tables, small enough to port to node C.

Encoder: ``low`` (with carry into bytes already written) and ``range`` start at 0 and 2**32-1.
A symbol with cumulative frequency ``cum`` and frequency ``freq`` (out of 4096) sets
``r = range >> 12; low += r*cum; range = r*freq``; ``n`` raw bits (n ≤ 16) set ``r = range >> n;
low += r*value; range = r``. Whenever ``range < 2**24`` the top byte of ``low`` is written and
both shift left by 8. At the end the coder writes the fewest bytes that, followed by zero bytes,
land inside ``[low, low + range)``, then drops trailing zero bytes: the decoder reads zeros past
the end of the payload, so a frame costs about one byte of termination.
"""

from __future__ import annotations

import numpy as np

PROB_BITS = 12
PROB_TOTAL = 1 << PROB_BITS
RAW_CHUNK = 16
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF


class RangeEncoder:
    __slots__ = ("low", "out", "range")

    def __init__(self) -> None:
        self.low = 0
        self.range = _MASK32
        self.out = bytearray()

    def _carry(self) -> None:
        i = len(self.out) - 1
        while self.out[i] == 0xFF:
            self.out[i] = 0
            i -= 1
        self.out[i] += 1

    def _normalise(self) -> None:
        if self.low > _MASK32:
            self._carry()
            self.low &= _MASK32
        while self.range < _TOP:
            self.out.append(self.low >> 24)
            self.low = (self.low << 8) & _MASK32
            self.range <<= 8

    def encode(self, cum: int, freq: int) -> None:
        r = self.range >> PROB_BITS
        self.low += r * cum
        self.range = r * freq
        self._normalise()

    def encode_raw(self, value: int, nbits: int) -> None:
        """``nbits`` raw bits, most significant chunk of ≤16 bits first."""
        while nbits > 0:
            n = min(nbits, RAW_CHUNK)
            nbits -= n
            r = self.range >> n
            self.low += r * ((value >> nbits) & ((1 << n) - 1))
            self.range = r
            self._normalise()

    def finish(self) -> bytes:
        low, high = self.low, self.low + self.range  # candidate must satisfy low <= v < high
        for k in range(5):
            unit = 1 << (32 - 8 * k)
            v = -(-low // unit) * unit
            if v < high:
                break
        if v > _MASK32:
            self._carry()
            v &= _MASK32
        emitted = len(self.out)
        self.out += bytes((v >> (24 - 8 * i)) & 0xFF for i in range(k))
        # Drop trailing zero bytes (the decoder reads zeros past the end), but never below the
        # bytes emitted while coding: a decoder that consumed more than the payload holds then
        # knows the payload was cut short.
        out = bytes(self.out)
        keep = max(len(out.rstrip(b"\x00")), emitted)
        return out[:keep]


class BatchDecoder:
    """Decodes many independent payloads in lock step (one numpy lane per payload)."""

    __slots__ = ("bad", "code", "data", "flat", "lanes", "max_pos", "pos", "range", "row")

    def __init__(self, payloads: list[bytes], max_bytes: int) -> None:
        n = len(payloads)
        # Pad with zeros: the encoder trims trailing zeros, and reads past the end are zeros too.
        self.data = np.zeros((n, max_bytes + 8), dtype=np.int64)
        for i, p in enumerate(payloads):
            self.data[i, : len(p)] = np.frombuffer(p, dtype=np.uint8)
        self.lanes = np.arange(n)
        self.code = (
            (self.data[:, 0] << 24) | (self.data[:, 1] << 16) | (self.data[:, 2] << 8) | self.data[:, 3]
        )
        self.pos = np.full(n, 4, dtype=np.int64)
        self.range = np.full(n, _MASK32, dtype=np.int64)
        self.max_pos = max_bytes + 4
        self.flat = self.data.ravel()
        self.row = self.lanes * self.data.shape[1]
        self.bad = np.zeros(n, dtype=bool)  # lanes that reached a state no encoder produces

    def _impossible(self, v: np.ndarray, limit: int) -> np.ndarray:
        """Flag lanes whose target is past the last symbol (code ≥ range·…: never produced by an
        encoder) and park them at code 0, so a corrupted lane can neither overflow nor index out of
        its tables while the other lanes finish."""
        over = v >= limit
        if over.any():
            self.bad |= over
            self.code = np.where(over, 0, self.code)
            v = np.where(over, 0, v)
        return v

    def _normalise(self) -> None:
        # range >= 2**12 after any step, so at most two bytes come in per lane.
        one = self.range < _TOP
        if not one.any():
            return
        two = self.range < (1 << 16)
        at = self.row + np.minimum(self.pos, self.max_pos)
        b0 = self.flat[at]
        b1 = self.flat[at + 1]
        self.code = np.where(
            two, (self.code << 16) | (b0 << 8) | b1, np.where(one, (self.code << 8) | b0, self.code)
        )
        self.range = np.where(two, self.range << 16, np.where(one, self.range << 8, self.range))
        self.pos += one.astype(np.int64) + two

    def target(self) -> tuple[np.ndarray, np.ndarray]:
        """Per lane (r, value in 0..4095) for a table lookup."""
        r = self.range >> PROB_BITS
        return r, self._impossible(self.code // r, PROB_TOTAL)

    def consume(self, r: np.ndarray, cum: np.ndarray, freq: np.ndarray) -> None:
        self.code -= r * cum
        self.range = r * freq
        self._normalise()

    def target_where(self, lanes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`target` for the lanes that code a symbol at this step (0 elsewhere, unjudged)."""
        r = self.range >> PROB_BITS
        return r, self._impossible(np.where(lanes, self.code // r, 0), PROB_TOTAL)

    def consume_where(self, lanes: np.ndarray, r: np.ndarray, cum: np.ndarray, freq: np.ndarray) -> None:
        """:meth:`consume` on some lanes; the others keep their state (already normalised)."""
        self.code = np.where(lanes, self.code - r * cum, self.code)
        self.range = np.where(lanes, r * freq, self.range)
        self._normalise()

    def raw(self, nbits: np.ndarray) -> np.ndarray:
        """Per-lane raw values of ``nbits`` bits (0 allowed)."""
        value = np.zeros_like(nbits)
        left = nbits.copy()
        while True:
            active = left > 0
            if not active.any():
                return value
            n = np.minimum(left, RAW_CHUNK)
            left -= n
            r = self.range >> n
            v = self._impossible(self.code // r, 1 << n)
            self.code -= r * v
            self.range = r
            value = (value << n) | v
            self._normalise()
