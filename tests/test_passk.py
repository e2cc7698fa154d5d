"""pass@k against hand-computed values and its defining combinatorics."""

from __future__ import annotations

from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.eval.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (1, 1, 1, 1.0),
    (1, 0, 1, 0.0),
    (10, 3, 1, 0.3),                   # pass@1 is the fraction correct
    (4, 1, 2, 0.5),                    # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 2, 2, 0.7),                    # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (10, 1, 10, 1.0),
    (200, 0, 100, 0.0),
    (6, 3, 4, 1.0),                    # fewer wrong samples than k: always a pass
])
def test_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@settings(deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, n), st.integers(1, n))))
def test_matches_exact_binomials_without_overflow(nck):
    n, c, k = nck
    exact = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-9)


def test_mean_averages_problems():
    assert mean_pass_at_k([(4, 1), (5, 2)], 2) == pytest.approx((0.5 + 0.7) / 2)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 1, 6), (5, 1, 0), (5, 6, 1), (5, -1, 1)])
def test_invalid_counts_are_refused(n, c, k):
    with pytest.raises(ConfigError):
        pass_at_k(n, c, k)
