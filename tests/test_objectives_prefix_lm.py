"""Prefix-LM: split points within bounds (one per document with separate document attention,
one per sample with packed), loss exactly on labels from each split point on, and the attention
pattern's contract (bidirectional prefix, causal after, documents apart) on a toy attention
layer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_strategies import (
    IDS,
    assert_eod_ends_its_document,
    assert_sample_shape,
    document_runs,
    packed_samples,
)

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
def test_packed_one_prefix_per_sample_loss_from_the_split_point_on(packed, config, seed):
    """data.document_attention=packed: the sample is one sequence, as before documents were
    kept apart."""
    raw, seq_len = packed
    sample = prefix_lm_sample(raw, IDS, seq_len, np.random.default_rng(seed), config,
                              per_document=False)
    assert_sample_shape(sample, seq_len)
    assert (sample.prefix_mask == (np.arange(seq_len) < sample.prefix_len)).all()
    lo, hi = prefix_bounds(seq_len, config)
    p = sample.prefix_len
    assert 1 <= lo <= p <= hi <= seq_len
    assert sample.objective == "prefix_lm"
    assert (sample.tokens == raw[:-1]).all()
    # labels[t] is raw[t + 1]: it counts iff raw index t + 1 >= p, i.e. t >= p - 1
    label_raw_index = np.arange(seq_len) + 1
    assert (sample.loss_mask == ((label_raw_index >= p) & (sample.labels != IDS.pad))).all()


@settings(max_examples=200, deadline=None)
@given(packed_samples(), prefix_configs(), st.integers(0, 2**32 - 1))
def test_separate_each_document_gets_its_own_split_by_the_same_rule(packed, config, seed):
    """Document d (L input positions from `start`) gets p_d drawn, in document order from the
    sample's generator, by the rule one sample gets: its first p_d positions are its prefix and
    its labels count from start + p_d - 1 on."""
    raw, seq_len = packed
    sample = prefix_lm_sample(raw, IDS, seq_len, np.random.default_rng(seed), config)
    assert_sample_shape(sample, seq_len)
    assert_eod_ends_its_document(sample, IDS)
    assert (sample.tokens == raw[:-1]).all()
    rng = np.random.default_rng(seed)
    counts = np.zeros(seq_len, dtype=bool)
    for start, end in document_runs(sample.doc_ids):
        lo, hi = prefix_bounds(end - start, config)
        p = int(rng.integers(lo, hi + 1))
        assert sample.prefix_mask[start:end].tolist() == [True] * p + [False] * (end - start - p)
        counts[start + p - 1:end] = True
    assert (sample.loss_mask == (counts & (sample.labels != IDS.pad))).all()


def test_split_point_is_spread_over_the_bounds():
    config = PrefixLMConfig(min_prefix_fraction=0.25, max_prefix_fraction=0.75)
    rng = np.random.default_rng(0)
    raw = np.arange(24, 24 + 101)  # one document: per document and per sample agree
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
    one_doc = np.zeros(seq_len, dtype=np.int32)
    mask = prefix_lm_attention_mask(one_doc, np.arange(seq_len) < p)
    before, after = toy_attention(x, mask)[:j], toy_attention(changed, mask)[:j]
    if j >= p:      # causal part: a later token never changes earlier outputs
        assert np.allclose(before, after)
    elif j > 0:     # prefix: a prefix token changes earlier outputs, which a causal mask never does
        # (exactly: when the earlier query barely attends to token j the change can be ~1e-7)
        assert np.abs(before - after).max() > 0
        causal = prefix_lm_attention_mask(one_doc, np.zeros(seq_len, dtype=bool))
        assert np.allclose(toy_attention(x, causal)[:j], toy_attention(changed, causal)[:j])


@settings(max_examples=100, deadline=None)
@given(packed_samples(max_seq_len=24), st.integers(0, 2**32 - 1), st.data())
def test_no_token_sees_another_document(packed, seed, data):
    """Changing a token of one document changes no output of any other document."""
    raw, seq_len = packed
    sample = prefix_lm_sample(raw, IDS, seq_len, np.random.default_rng(seed), PrefixLMConfig())
    j = data.draw(st.integers(0, seq_len - 1))
    x = np.random.default_rng(seed % 1000).normal(size=(seq_len, 4))
    changed = x.copy()
    changed[j] += 1.0
    mask = prefix_lm_attention_mask(sample.doc_ids, sample.prefix_mask)
    others = sample.doc_ids != sample.doc_ids[j]
    assert np.allclose(toy_attention(x, mask)[others], toy_attention(changed, mask)[others])


@pytest.mark.parametrize("lo, hi, fragment", [
    (-0.1, 0.5, "objectives.prefix_lm.min_prefix_fraction=-0.1"),
    (0.2, 1.5, "objectives.prefix_lm.max_prefix_fraction=1.5"),
    (0.8, 0.2, "objectives.prefix_lm.min_prefix_fraction=0.8 must be <="),
])
def test_bad_prefix_bounds_name_the_key(lo, hi, fragment):
    with pytest.raises(ConfigError) as info:
        PrefixLMConfig(min_prefix_fraction=lo, max_prefix_fraction=hi).validate()
    assert fragment in str(info.value)
