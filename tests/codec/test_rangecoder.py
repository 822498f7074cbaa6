import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import tables
from gateway.codec.rangecoder import PROB_TOTAL, BatchDecoder, RangeEncoder


def _decode(payload: bytes, freq: np.ndarray, steps: list[tuple[str, int]]) -> list[int]:
    cum = tables.cumulative(freq)
    lut = tables.lookup(freq)
    dec = BatchDecoder([payload], len(payload))
    out = []
    for kind, arg in steps:
        if kind == "sym":
            r, v = dec.target()
            s = lut[v]
            dec.consume(r, cum[s], freq[s])
            out.append(int(s[0]))
        else:
            out.append(int(dec.raw(np.array([arg]))[0]))
    return out


def _consumed(payload: bytes, freq: np.ndarray, steps: list[tuple[str, int]]) -> int:
    cum, lut = tables.cumulative(freq), tables.lookup(freq)
    dec = BatchDecoder([payload], len(payload))
    for kind, arg in steps:
        if kind == "sym":
            r, v = dec.target()
            dec.consume(r, cum[lut[v]], freq[lut[v]])
        else:
            dec.raw(np.array([arg]))
    return int(dec.pos[0]) - 4


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 500), min_size=tables.NSYM, max_size=tables.NSYM),
    st.lists(
        st.one_of(
            st.tuples(st.just("sym"), st.integers(0, 63)),
            st.tuples(st.integers(1, 40), st.integers(0, 2**40)),
        ),
        max_size=120,
    ),
)
def test_encoder_and_batch_decoder_agree(weights, ops):
    freq = tables.quantise_freqs(np.array(weights, dtype=np.float64))
    cum = tables.cumulative(freq)
    enc = RangeEncoder()
    steps, expect = [], []
    for op in ops:
        if op[0] == "sym":
            enc.encode(int(cum[op[1]]), int(freq[op[1]]))
            steps.append(("sym", 0))
            expect.append(op[1])
        else:
            nbits, value = op
            value &= (1 << nbits) - 1
            enc.encode_raw(value, nbits)
            steps.append(("raw", nbits))
            expect.append(value)
    emitted = len(enc.out)
    payload = enc.finish()
    # Trailing zeros are implied by the decoder, but never trimmed below the bytes emitted while
    # coding, so that the decoder's consumption bounds the payload length from both sides.
    assert len(payload) == emitted or not payload.endswith(b"\x00")
    assert emitted <= len(payload) <= emitted + 2
    assert _decode(payload, freq, steps) == expect
    assert _consumed(payload, freq, steps) == emitted  # the decoder reads exactly what was emitted


def test_a_certain_symbol_costs_almost_nothing():
    freq = np.ones(tables.NSYM, dtype=np.int64)
    freq[0] = PROB_TOTAL - (tables.NSYM - 1)
    enc = RangeEncoder()
    for _ in range(200):
        enc.encode(0, int(freq[0]))
    # 200 × 0.022 bits ≈ 4.4 bits, plus at most two termination bytes.
    assert len(enc.finish()) <= 2


def test_empty_stream_is_empty_payload():
    assert RangeEncoder().finish() == b""
