"""A plain-integer decoder written from docs/codec.md, independent of the numpy code.

It is what the node/firmware C port should look like; agreeing with it on real payloads checks
both the implementation and the document.
"""

from dataclasses import replace

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, train
from gateway.codec.train import frames_of

from .conftest import burst_series, grid_series, parity_series


class RefDecoder:
    def __init__(self, payload: bytes) -> None:
        self.p = payload
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        for _ in range(4):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        b = self.p[self.pos] if self.pos < len(self.p) else 0
        self.pos += 1
        return b

    def _norm(self) -> None:
        while self.range < 1 << 24:
            self.code = ((self.code << 8) | self._byte()) & 0xFFFFFFFF
            self.range <<= 8

    def symbol(self, freq: list[int]) -> int:
        r = self.range >> 12
        s = min(self.code // r, 4095)
        cum = 0
        for sym, f in enumerate(freq):
            if cum + f > s:
                self.code -= r * cum
                self.range = r * f
                self._norm()
                return sym
            cum += f
        raise AssertionError("frequencies do not sum to 4096")

    def raw(self, n: int) -> int:
        v = 0
        while n > 0:
            m = min(n, 16)
            n -= m
            r = self.range >> m
            c = min(self.code // r, (1 << m) - 1)
            self.code -= r * c
            self.range = r
            v = (v << m) | c
            self._norm()
        return v


def unbin(dec: RefDecoder, freq: list[int], k: int) -> int:
    sym = dec.symbol(freq)
    if sym < 4:
        z = sym
    elif sym < 32:
        z = 4 + (((sym - 4) << k) | dec.raw(k))
    else:
        e = sym - 32
        raw = dec.raw(e + k)
        q = 28 + (1 << e) - 1 + (raw >> k)
        z = 4 + ((q << k) | (raw & ((1 << k) - 1)))
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def unbin_first(dec: RefDecoder, freq: list[int], s: int) -> int:
    """Table 0: 62 bins of 2**s values centred on the prior, escapes 0 (below) and 63 (above)."""
    sym = dec.symbol(freq)
    if sym in (0, 63):
        e = dec.raw(5)
        beyond = (1 << e) - 1 + dec.raw(e)
        w = -beyond - 1 if sym == 0 else 62 * (1 << s) + beyond
    else:
        w = (sym - 1) * (1 << s) + dec.raw(s)
    return w - 31 * (1 << s)


def ref_decode(model, payload: bytes) -> list[list[int]]:
    p = model.params
    c_n = p.channels
    base, a0, a1, a2, lev = (v.tolist() for v in (p.base, p.a0, p.a1, p.a2, p.lev))
    thr, shift, freq, grid, jfreq = (v.tolist() for v in (p.thr, p.shift, p.freq, p.grid, p.jfreq))
    pmode, actw = p.pmode.tolist(), p.actw.tolist()
    dec = RefDecoder(payload)
    count_freq = [4096 - 64] + [1] * 64
    s = dec.symbol(count_freq)
    n = model.samples_per_frame if s == 0 else s
    x = [[0] * c_n for _ in range(n)]
    d = [[0] * c_n for _ in range(n)]
    res = [[0] * c_n for _ in range(n)]  # whole residuals x - pred
    for t in range(n):
        for c in range(c_n):
            if t == 0:
                acc = sum(a0[c][j] * (x[0][j] - base[j]) for j in range(c))
                pred, tab = base[c] + ((acc + 2048) >> 12), 0
            else:
                acc = sum(a1[c][j] * d[t - 1][j] for j in range(c_n))
                acc += sum(a2[c][j] * d[t][j] for j in range(c))
                acc += lev[c] * (x[t - 1][c] - base[c])
                change = (acc + 2048) >> 12
                if pmode[c] & 1:  # snapped: round(change / grid) grid steps, each round(j·g/256)
                    j = (change * 256 + grid[c] // 2) // grid[c]
                    change = (j * grid[c] + 128) // 256
                pred = x[t - 1][c] + change
                # activity: own |previous change| and earlier channels' |residual| now, weighted
                act = actw[c][c] * abs(d[t - 1][c]) + sum(
                    actw[c][j] * min(abs(res[t][j]), 65535) for j in range(c)
                )
                tab = 1 if t == 1 else 2 + sum(1 for th in thr[c] if act > th)
            pred = max(-(1 << 30), min(1 << 30, pred))
            k = shift[c][tab]
            r = unbin(dec, freq[c][tab], k) if k < 32 else unbin_first(dec, freq[c][0], k - 32)
            if grid[c] != 256:
                if pmode[c] & 2:  # where the predicted lattice point falls within one grid period
                    phase = (pred * 256 + r * grid[c]) % grid[c] * 4 // grid[c]
                else:
                    phase = (r * grid[c]) % 256 // 64  # the grid index's lattice phase picks the table
                r = ((r * grid[c] + 128) >> 8) + unbin(dec, jfreq[c][phase], 0)
            x[t][c] = pred + r
            res[t][c] = r
            if t:
                d[t][c] = x[t][c] - x[t - 1][c]
    # Revision 6: x holds lattice indices on lattice channels; per sample, per lattice channel in
    # schema order, the off-lattice flag and then j - 1 in bitlen(G - 2) raw bits.
    vmap = p.vmap.tolist()

    def lat(k: int, row: list[int]) -> int:
        num, den, mode = row[0] * k + row[1], row[2], row[3]
        if mode == 2:  # toward zero
            return -((-num) // den) if num < 0 else num // den
        return num // den

    for t in range(n):
        for c in range(c_n):
            row = vmap[c]
            if row[3] == 0:
                continue
            f_off = row[4]
            off = dec.symbol([4096 - f_off, f_off])
            low = lat(x[t][c], row)
            j = 0
            if off:
                g = lat(x[t][c] + 1, row) - low
                j = dec.raw((g - 2).bit_length()) + 1
                assert j < g
            x[t][c] = low + j
    return x


def test_reference_decoder_agrees_on_the_demo_model(demo):
    rng = np.random.default_rng(3)
    data = demo.generate(200, rng)
    for n in (16, 5, 1, 64):
        for start in (0, 37, 120):
            frame = data[start : start + n]
            assert ref_decode(demo, demo.encode(frame)) == frame.tolist()


def test_reference_decoder_agrees_with_predictor_and_grid_in_use(model, series):
    x = grid_series()
    schema = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    gm = train(x[:400], schema, 16, buckets=3)
    assert (gm.params.grid != 256).any()
    assert np.any(gm.params.jfreq != gm.params.jfreq[:, :1])  # jitter tables by lattice phase in use
    for frame in frames_of(x[400:], 16)[:5]:
        assert ref_decode(gm, gm.encode(frame)) == frame.tolist()
    for frame in frames_of(series, 16)[:5]:
        assert ref_decode(model, model.encode(frame)) == frame.tolist()


@pytest.mark.parametrize("n", [2, 9])
def test_reference_decoder_with_outliers(model, series, n):
    frame = series[:n].copy()
    frame[-1, 2] += 123_456
    assert ref_decode(model, model.encode(frame)) == frame.tolist()


@pytest.mark.parametrize("jump", [40_000, -40_000, 999_999_999, -999_999_999])
def test_reference_decoder_first_sample_escapes(model, series, jump):
    """A first sample far outside table 0's window (both escapes, long tails) decodes everywhere."""
    frame = series[:4].copy()
    frame[0, 1] += jump
    payload = model.encode(frame)
    assert ref_decode(model, payload) == frame.tolist()
    assert model.decode(payload).tolist() == frame.tolist()
    assert model.decode_many([payload])[0].tolist() == frame.tolist()


@pytest.mark.parametrize("modes", [[3, 3], [1, 2], [2, 1]])
def test_reference_decoder_agrees_with_prediction_modes(modes):
    """Bitstream revision 4: snapped changes and the lattice-phase jitter, each alone and together."""
    x = parity_series(1500)
    schema = Schema(tuple(Channel(f"cgm{i}", "", 1.0) for i in range(2)))
    pm = train(x[:1100], schema, 16, buckets=2)
    grid = np.where(pm.params.grid != 256, pm.params.grid, 512)
    forced = Model(schema, replace(pm.params, grid=grid, pmode=np.array(modes)), 16)
    for frame in [*frames_of(x[1100:], 16)[:6], x[1100:1103]]:
        payload = forced.encode(frame)
        assert ref_decode(forced, payload) == frame.tolist()
        assert forced.decode(payload).tolist() == frame.tolist()


def test_reference_decoder_agrees_with_activity_weights():
    """Bitstream revision 5: contexts from the earlier channels' residuals at the same step, as
    trained on shared bursts and forced onto a grid model with both prediction modes."""
    x = burst_series()
    schema = Schema(tuple(Channel(f"ax{i}", "", 1.0) for i in range(3)))
    aw = train(x[:1000], schema, 16, buckets=3)
    assert np.tril(aw.params.actw, -1).any()
    pq = parity_series(1500)
    pschema = Schema(tuple(Channel(f"cgm{i}", "", 1.0) for i in range(2)))
    pm = train(pq[:1100], pschema, 16, buckets=2)
    grid = np.where(pm.params.grid != 256, pm.params.grid, 512)
    forced = Model(
        pschema, replace(pm.params, grid=grid, pmode=np.array([3, 3]), actw=np.array([[5, 0], [90, 16]])), 16
    )
    cases = [(aw, f) for f in [*frames_of(x[1000:], 16)[:6], x[1000:1003]]]
    cases += [(forced, f) for f in frames_of(pq[1100:], 16)[:6]]
    for m, frame in cases:
        payload = m.encode(frame)
        assert ref_decode(m, payload) == frame.tolist()
        assert m.decode(payload).tolist() == frame.tolist()
        assert m.decode_many([payload])[0].tolist() == frame.tolist()


def test_reference_decoder_agrees_with_value_lattices():
    """Bitstream revision 6: lattice indices (an ADC scale through zero, a rounded unit conversion
    with readings off it) coded with the revision-5 machinery, and the flags and jitters after."""
    rng = np.random.default_rng(4)
    n = 1400
    counts = np.cumsum(rng.integers(-3, 4, n))
    adc = np.trunc(1000 * counts / 101).astype(np.int64)
    whole_f = 50 + np.cumsum(rng.integers(-1, 2, n))
    temp = np.floor((100 * whole_f - 3200 + 9) / 18).astype(np.int64)
    temp[rng.random(n) < 0.02] += 2
    x = np.stack([adc, temp, 300 + np.cumsum(rng.integers(-2, 3, n))], axis=1)
    schema = Schema(tuple(Channel(f"ch{i}", "", 1.0) for i in range(3)))
    lm = train(x[:1000], schema, 16, buckets=2)
    assert lm.params.vmap[:2, 3].tolist() == [2, 1] and lm.params.vmap[2, 3] == 0
    frames = [*frames_of(x[1000:], 16)[:8], x[1000:1003]]
    spiky = x[1000:1016].copy()
    spiky[3, 0] += 7  # off the ADC lattice by 7 of its ≈ 9.9
    spiky[4, 1] = 2**30 - 1
    for frame in [*frames, spiky]:
        payload = lm.encode(frame)
        assert ref_decode(lm, payload) == frame.tolist()
        assert lm.decode(payload).tolist() == frame.tolist()
        assert lm.decode_many([payload])[0].tolist() == frame.tolist()
