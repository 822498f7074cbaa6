"""A plain-integer decoder written from docs/codec.md, independent of the numpy code.

It is what the node/firmware C port should look like; agreeing with it on real payloads checks
both the implementation and the document.
"""

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from gateway.codec import Channel, Model, Schema, train
from gateway.codec.errors import PayloadError
from gateway.codec.rangecoder import RangeEncoder
from gateway.codec.train import frames_of

from .conftest import burst_series, grid_series, parity_series


class Refused(Exception):
    """The reference decoder refuses the payload (docs/codec.md: the gateway's PayloadError)."""


class RefDecoder:
    def __init__(self, payload: bytes) -> None:
        self.p = payload
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        # Every step as the encoder made it: ("sym", cum, freq) and ("raw", value, bits).
        self.log: list[tuple[str, int, int]] = []
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
        s = self.code // r
        if s >= 4096:
            raise Refused("impossible state: symbol target past the table")
        cum = 0
        for sym, f in enumerate(freq):
            if cum + f > s:
                self.code -= r * cum
                self.range = r * f
                self.log.append(("sym", cum, f))
                self._norm()
                return sym
            cum += f
        raise AssertionError("frequencies do not sum to 4096")

    def raw(self, n: int) -> int:
        v, bits = 0, n
        while n > 0:
            m = min(n, 16)
            n -= m
            r = self.range >> m
            c = self.code // r
            if c >= 1 << m:
                raise Refused("impossible state: raw chunk past its range")
            self.code -= r * c
            self.range = r
            v = (v << m) | c
            self._norm()
        if bits:
            self.log.append(("raw", v, bits))
        return v

    def check_length(self) -> None:
        """D bytes consumed beyond the first four: the payload holds D to D + 2 bytes."""
        used = self.pos - 4
        if len(self.p) > used + 2:
            raise Refused(f"{len(self.p) - used} bytes past the {used} consumed")
        if len(self.p) < used:
            raise Refused("cut short")


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


def ref_lattice(k: int, row: list[int]) -> int:
    """L(k) of a lattice row (P, Q, D, mode, F): floor((P·k + Q) / D) (mode 1) or trunc(P·k / D)."""
    num, den, mode = row[0] * k + row[1], row[2], row[3]
    if mode == 2:  # toward zero
        return -((-num) // den) if num < 0 else num // den
    return num // den


def ref_index(x: int, row: list[int]) -> tuple[int, int]:
    """Reading → (k, j) by the closed form of docs/codec.md, checked against k = max{k : L(k) ≤ x}."""
    big_p, q, d, mode = row[:4]
    k = (d * x - q) // big_p if mode == 2 and x < 0 else (d * x + d - 1 - q) // big_p
    assert ref_lattice(k, row) <= x < ref_lattice(k + 1, row)
    return k, x - ref_lattice(k, row)


def ref_decode(model, payload: bytes, samples_log: list | None = None) -> list[list[int]]:
    """The frame's readings, or Refused. ``samples_log`` receives the coder steps up to the end of
    the samples (the sample count, the samples' symbols and raw bits)."""
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
            if abs(x[t][c]) >= 1 << 30:
                raise Refused("value outside ±2^30")
            res[t][c] = r
            if t:
                d[t][c] = x[t][c] - x[t - 1][c]
    if samples_log is not None:  # the count and the samples' steps: what precedes the lattice tail
        samples_log.extend(dec.log)
    # Revision 6: x holds lattice indices on lattice channels. Revision 7: first a frame flag per
    # lattice channel with G = vframe[c] != 0 (symbol 1 = some reading off), then per sample, per
    # lattice channel in schema order (except those whose frame flag said all on), the off-lattice
    # flag and j - 1 in bitlen(g - 2) raw bits.
    vmap, vframe = p.vmap.tolist(), p.vframe.tolist()
    lattice_channels = [c for c in range(c_n) if vmap[c][3] != 0]
    some_off = {c: dec.symbol([4096 - vframe[c], vframe[c]]) == 1 for c in lattice_channels if vframe[c]}
    flagged = [c for c in lattice_channels if some_off.get(c, True)]
    seen_off = set()
    for t in range(n):
        for c in lattice_channels:
            row = vmap[c]
            low = ref_lattice(x[t][c], row)
            j = 0
            if c in flagged and dec.symbol([4096 - row[4], row[4]]):
                g = ref_lattice(x[t][c] + 1, row) - low
                j = dec.raw((g - 2).bit_length()) + 1
                if j - 1 > g - 2:
                    raise Refused("jitter past the next lattice value")
                seen_off.add(c)
            x[t][c] = low + j
            if abs(x[t][c]) >= 1 << 30:
                raise Refused("reading outside ±2^30")
    if any(off and c not in seen_off for c, off in some_off.items()):
        raise Refused("a frame flag said some reading is off the lattice and none was")
    dec.check_length()
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


@cache
def _lattice_case() -> tuple[Model, np.ndarray]:
    """A revision-6 model of an ADC scale through zero (trunc), a rounded unit conversion with 2 %
    of its readings off it (floor) and a channel on no lattice; and its readings (1000 trained on)."""
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
    assert not lm.params.vframe.any()
    return lm, x


def _spiky(x: np.ndarray) -> np.ndarray:
    spiky = x[1000:1016].copy()
    spiky[3, 0] += 7  # off the ADC lattice by 7 of its ≈ 9.9
    spiky[4, 1] = 2**30 - 1
    return spiky


def test_reference_decoder_agrees_with_value_lattices():
    """Bitstream revision 6: lattice indices (an ADC scale through zero, a rounded unit conversion
    with readings off it) coded with the revision-5 machinery, and the flags and jitters after."""
    lm, x = _lattice_case()
    frames = [*frames_of(x[1000:], 16)[:8], x[1000:1003]]
    for frame in [*frames, _spiky(x)]:
        payload = lm.encode(frame)
        assert ref_decode(lm, payload) == frame.tolist()
        assert lm.decode(payload).tolist() == frame.tolist()
        assert lm.decode_many([payload])[0].tolist() == frame.tolist()


def _forced_frame_flags(vframe: tuple[int, ...]) -> Model:
    lm, _x = _lattice_case()
    return Model(lm.schema, replace(lm.params, vframe=np.array(vframe)), lm.samples_per_frame)


def _off(model: Model, frame: np.ndarray, c: int) -> bool:
    """Whether some reading of channel c in the frame is off its lattice (docs/codec.md's index)."""
    row = model.params.vmap[c].tolist()
    return any(ref_index(v, row)[1] for v in frame[:, c].tolist())


# Frame flags on the ADC channel only, on the unit conversion only (G above one half: "some off"
# the commoner case), and on both; never on channel 2, which has no lattice.
FRAME_FLAGS = [(700, 0, 0), (0, 2900, 0), (12, 1100, 0)]


@pytest.mark.parametrize("vframe", FRAME_FLAGS)
def test_reference_decoder_agrees_with_forced_frame_flags(vframe):
    """Bitstream revision 7 on the revision-6 model above with frame flags forced on: frames all on
    a flagged channel's lattice (no per-reading flags) and frames with readings off it, full, short
    and 64 samples long, next to a lattice channel without a frame flag."""
    _lm, x = _lattice_case()
    fm = _forced_frame_flags(vframe)
    frames = [*frames_of(x[1000:], 16)[:10], x[1000:1003], x[1100:1101], x[1100:1164], _spiky(x)]
    for c in (0, 1):  # every flagged channel is seen both ways
        if vframe[c]:
            kinds = {_off(fm, f, c) for f in frames}
            assert kinds == {True, False}, (c, kinds)
    payloads = [fm.encode(f) for f in frames]
    batch = fm.decode_many(payloads)
    for frame, payload, lane in zip(frames, payloads, batch, strict=True):
        assert ref_decode(fm, payload) == frame.tolist()
        assert fm.decode(payload).tolist() == frame.tolist()
        assert lane.tolist() == frame.tolist()


def _walk_with_resolution_change(n: int = 2000, seed: int = 0) -> np.ndarray:
    """One channel like the CGM set's current: a slow random walk read at every step for its first
    half, at even values only (a coarser resolution) for its second."""
    rng = np.random.default_rng(seed)
    v = 2000 + np.cumsum(rng.normal(0, 1, n))
    q = np.rint(v)
    q[n // 2 :] = 2 * np.rint(v[n // 2 :] / 2)
    return q.astype(np.int64)[:, None]


def test_reference_decoder_agrees_with_trained_frame_flags():
    """Bitstream revision 7 as trained: a lattice that holds for the second half only (L(k) = 2k),
    with a frame flag, on frames of either half and across the change."""
    q = _walk_with_resolution_change()
    tm = train(q, Schema((Channel("isig", "", 1.0),)), 16)
    assert tm.params.vmap[0, 3] != 0 and tm.params.vframe[0] != 0
    frames = [*frames_of(q, 16)[::9], q[992:1008], q[1500:1503], q[5:6], q[1200:1264]]
    assert {_off(tm, f, 0) for f in frames} == {True, False}
    payloads = [tm.encode(f) for f in frames]
    batch = tm.decode_many(payloads)
    for frame, payload, lane in zip(frames, payloads, batch, strict=True):
        assert ref_decode(tm, payload) == frame.tolist()
        assert tm.decode(payload).tolist() == frame.tolist()
        assert lane.tolist() == frame.tolist()


def ref_payload(model: Model, frame: np.ndarray, says: dict[int, bool] | None = None) -> bytes:
    """The frame's payload re-encoded from docs/codec.md: the sample count and samples' steps as
    the model's encoder made them, then the lattice tail written here from the readings, with the
    frame flags of the channels in ``says`` (True: "some off") forced. Off readings are flagged
    off, all others on."""
    p = model.params
    vmap, vframe = p.vmap.tolist(), p.vframe.tolist()
    log: list = []
    ref_decode(model, model.encode(frame), log)
    enc = RangeEncoder()
    for kind, a, b in log:
        if kind == "sym":
            enc.encode(a, b)
        else:
            enc.encode_raw(a, b)
    rows = frame.tolist()
    lattice_channels = [c for c in range(p.channels) if vmap[c][3] != 0]
    kj = {c: [ref_index(row[c], vmap[c]) for row in rows] for c in lattice_channels}
    some_off = {c: any(j for _k, j in kj[c]) for c in lattice_channels if vframe[c]}
    some_off.update(says or {})
    for c, off in some_off.items():
        g = vframe[c]
        enc.encode(4096 - g, g) if off else enc.encode(0, 4096 - g)
    for t in range(len(rows)):
        for c in lattice_channels:
            if not some_off.get(c, True):
                continue
            f_off, (k, j) = vmap[c][4], kj[c][t]
            if j == 0:
                enc.encode(0, 4096 - f_off)
                continue
            enc.encode(4096 - f_off, f_off)
            bits = (ref_lattice(k + 1, vmap[c]) - ref_lattice(k, vmap[c]) - 2).bit_length()
            if bits:
                enc.encode_raw(j - 1, bits)
    return enc.finish()


@pytest.mark.parametrize("vframe", FRAME_FLAGS)
def test_frame_flag_that_promises_an_off_reading_and_none_comes_is_refused(vframe):
    """A frame flag "some off" followed by per-reading flags that are all "on" is a payload no
    encoder makes: the reference decoder and both gateway decoders refuse it, and in a batch it
    costs only its own frame."""
    _lm, x = _lattice_case()
    fm = _forced_frame_flags(vframe)
    frames = [*frames_of(x[1000:], 16)[:10], x[1000:1003], _spiky(x)]
    for frame in frames:  # the re-encoder writes what the gateway's encoder writes, byte for byte
        assert ref_payload(fm, frame) == fm.encode(frame)
    flagged = [c for c in (0, 1) if vframe[c]]
    all_on = [f for f in frames if not any(_off(fm, f, c) for c in flagged)]
    assert all_on
    for frame in all_on[:3]:
        good = fm.encode(frame)
        for c in flagged:
            bad = ref_payload(fm, frame, {c: True})
            assert bad != good
            with pytest.raises(Refused, match="none was"):
                ref_decode(fm, bad)
            with pytest.raises(PayloadError, match="frame flag"):
                fm.decode(bad)
            with pytest.raises(PayloadError, match="payload 1"):
                fm.decode_many([good, bad, good])
            each = fm.decode_each([good, bad, good])
            assert isinstance(each[1], PayloadError)
            for lane in (each[0], each[2]):
                assert not isinstance(lane, PayloadError) and lane.tolist() == frame.tolist()
