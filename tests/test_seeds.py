"""Seed aggregation (mean ± sample sd) and the noise rule that marks a difference."""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from megatron_rrtf.eval.seeds import aggregate, beyond_noise, format_stats, verdict

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
seeds3 = st.lists(finite, min_size=3, max_size=6)


@given(seeds3)
def test_aggregate_matches_the_sample_mean_and_sd(values):
    stats = aggregate(values)
    assert stats.n == len(values)
    assert math.isclose(stats.mean, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(stats.sd, statistics.stdev(values), rel_tol=1e-6, abs_tol=1e-6)


def test_missing_values_are_left_out_and_one_seed_has_no_spread():
    assert aggregate([None, float("nan")]) is None
    one = aggregate([None, 2.5])
    assert (one.mean, one.sd, one.n) == (2.5, None, 1)
    assert format_stats(one) == "2.500" and format_stats(None) == "–"
    assert format_stats(aggregate([1.0, 2.0, 3.0])) == "2.000 ± 1.000"


@given(seeds3, seeds3)
def test_the_rule_is_symmetric_and_shift_invariant(a, b):
    sa, sb = aggregate(a), aggregate(b)
    assert beyond_noise(sa, sb) == beyond_noise(sb, sa)
    shifted = beyond_noise(aggregate([x + 7.0 for x in a]), aggregate([x + 7.0 for x in b]))
    se = math.sqrt(sa.sd ** 2 / sa.n + sb.sd ** 2 / sb.n)
    if abs(abs(sa.mean - sb.mean) - 2 * se) > 1e-6 * (1 + se):  # not on the boundary
        assert shifted == beyond_noise(sa, sb)


@given(seeds3)
def test_a_setting_is_never_beyond_noise_of_itself(a):
    assert beyond_noise(aggregate(a), aggregate(list(reversed(a)))) is False


def test_a_difference_counts_only_past_twice_its_standard_error():
    a = aggregate([1.0, 2.0, 3.0])              # sd 1, n 3
    se = math.sqrt(2 / 3)                       # sqrt(1/3 + 1/3)
    just_in = aggregate([2.0 + 2 * se - 1e-6 + d for d in (-1.0, 0.0, 1.0)])
    just_out = aggregate([2.0 + 2 * se + 1e-6 + d for d in (-1.0, 0.0, 1.0)])
    assert beyond_noise(a, just_in) is False and verdict(a, just_in) == "no"
    assert beyond_noise(a, just_out) is True and verdict(a, just_out) == "yes"


def test_without_two_seeds_on_each_side_nothing_is_marked():
    assert beyond_noise(aggregate([1.0]), aggregate([5.0, 5.1, 5.2])) is None
    assert beyond_noise(None, aggregate([5.0, 5.1])) is None
    assert verdict(aggregate([1.0]), aggregate([9.0])).startswith("n/a")


def test_zero_spread_settings_that_differ_are_beyond_noise():
    assert beyond_noise(aggregate([1.0, 1.0, 1.0]), aggregate([1.1, 1.1, 1.1])) is True
