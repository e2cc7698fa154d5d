"""Prefix-LM: split point within bounds, loss exactly on labels at raw index >= p, and the
attention pattern's contract (bidirectional prefix, causal after) on a toy attention layer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_strategies import IDS, assert_sample_shape, packed_samples

from megatron_rrtf.config.objectives import PrefixLMConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.objectives.prefix_lm import (
    prefix_bounds,
    prefix_lm_attention_mask,
    prefix_lm_sample,
)


@st.composite
def prefix_configs(draw):
    lo = draw(st.floats(0.0, 1.0))
    return PrefixLMConfig(min_prefix_fraction=lo, max_prefix_fraction=draw(st.floats(lo, 1.0)))


@settings(max_examples=200, deadline=None)
@given(packed_samples(), prefix_configs(), st.integers(0, 2**32 - 1))
def test_loss_is_on_labels_from_the_split_point_on(packed, config, seed):
    raw, seq_len = packed
    sample = prefix_lm_sample(raw, IDS, seq_len, np.random.default_rng(seed), config)
    assert_sample_shape(sample, seq_len)
    lo, hi = prefix_bounds(seq_len, config)
    p = sample.prefix_len
    assert 1 <= lo <= p <= hi <= seq_len
    assert sample.objective == "prefix_lm"
    assert (sample.tokens == raw[:-1]).all()
    # labels[t] is raw[t + 1]: it counts iff raw index t + 1 >= p, i.e. t >= p - 1
    label_raw_index = np.arange(seq_len) + 1
    assert (sample.loss_mask == ((label_raw_index >= p) & (sample.labels != IDS.pad))).all()


def test_split_point_is_spread_over_the_bounds():
    config = PrefixLMConfig(min_prefix_fraction=0.25, max_prefix_fraction=0.75)
    rng = np.random.default_rng(0)
    raw = np.arange(24, 24 + 101)
    points = [prefix_lm_sample(raw, IDS, 100, rng, config).prefix_len for _ in range(2000)]
    assert min(points) == 25 and max(points) == 75
    assert np.mean(points) == pytest.approx(50, abs=1.5)


def toy_attention(x, mask):
    """One head, identity projections: out[i] = softmax(x[i] . x[j] over allowed j) @ x."""
    scores = np.where(mask, x @ x.T, -np.inf)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (weights / weights.sum(axis=1, keepdims=True)) @ x


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 12), st.data())
def test_prefix_mask_is_bidirectional_before_p_and_causal_after(seq_len, data):
    p = data.draw(st.integers(1, seq_len))
    j = data.draw(st.integers(0, seq_len - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.normal(size=(seq_len, 4))
    changed = x.copy()
    changed[j] += 1.0
    mask = prefix_lm_attention_mask(seq_len, p)
    before, after = toy_attention(x, mask)[:j], toy_attention(changed, mask)[:j]
    if j >= p:      # causal part: a later token never changes earlier outputs
        assert np.allclose(before, after)
    elif j > 0:     # prefix: a prefix token changes earlier outputs, which a causal mask never does
        # (exactly: when the earlier query barely attends to token j the change can be ~1e-7)
        assert np.abs(before - after).max() > 0
        causal = prefix_lm_attention_mask(seq_len, 0)
        assert np.allclose(toy_attention(x, causal)[:j], toy_attention(changed, causal)[:j])


@pytest.mark.parametrize("lo, hi, fragment", [
    (-0.1, 0.5, "objectives.prefix_lm.min_prefix_fraction=-0.1"),
    (0.2, 1.5, "objectives.prefix_lm.max_prefix_fraction=1.5"),
    (0.8, 0.2, "objectives.prefix_lm.min_prefix_fraction=0.8 must be <="),
])
def test_bad_prefix_bounds_name_the_key(lo, hi, fragment):
    with pytest.raises(ConfigError) as info:
        PrefixLMConfig(min_prefix_fraction=lo, max_prefix_fraction=hi).validate()
    assert fragment in str(info.value)
