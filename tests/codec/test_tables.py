import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec import tables
from gateway.codec.rangecoder import PROB_TOTAL


@given(
    st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=50), st.integers(0, tables.MAX_SHIFT)
)
def test_symbols_round_trip_over_the_int32_range(values, k):
    r = np.array(values, dtype=np.int64)
    sym, raw, nraw = tables.to_symbols(r, k)
    assert np.all((sym >= 0) & (sym < tables.NSYM))
    assert np.all(raw < (np.int64(1) << nraw))
    assert np.array_equal(tables.raw_bits(sym, k), nraw)
    assert np.array_equal(tables.from_symbols(sym, raw, np.int64(k)), r)


def test_small_residuals_are_exact_symbols_without_raw_bits():
    sym, _, nraw = tables.to_symbols(np.array([0, -1, 1, -2]), 5)
    assert sym.tolist() == [0, 1, 2, 3]
    assert nraw.tolist() == [0, 0, 0, 0]


def test_quantised_frequencies_sum_to_total_and_keep_every_symbol_codable():
    counts = np.zeros(tables.NSYM)
    counts[0] = 10_000
    counts[5] = 3
    f = tables.quantise_freqs(counts)
    assert f.sum() == PROB_TOTAL
    assert f.min() == 1
    assert f[0] > f[5] > 1
    lut = tables.lookup(f)
    assert np.array_equal(np.bincount(lut, minlength=tables.NSYM), f)
