"""Span corruption: invertible per document, spans complete and inside one document, loss only
where it belongs, length always seq_len."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_strategies import (
    IDS,
    assert_documents_restored,
    assert_sample_shape,
    document_runs,
    packed_samples,
    stream_of,
)

from megatron_rrtf.config.objectives import SpanConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.objectives.packing import split_documents
from megatron_rrtf.objectives.span import draw_spans, invert_span_stream, span_budget, span_sample


@st.composite
def span_configs(draw):
    lo = draw(st.floats(0.01, 0.9))
    hi = draw(st.floats(lo, 0.95))
    return SpanConfig(noise_density_min=lo, noise_density_max=hi,
                      mean_span_length=draw(st.floats(1.0, 8.0)),
                      max_spans=draw(st.integers(1, 16)),
                      loss_on_context=draw(st.booleans()))


def moved_regions(stream):
    """(start, end) of every moved span's tokens, end at its <eom>, read from the layout: after
    `<|endoftext|> <sep>` come as many moved spans as the context held sentinels."""
    s = stream.tolist()
    out, i, sentinels = [], 0, 0
    while i < len(s):
        if s[i] == IDS.sep:
            i += 1
            for _ in range(sentinels):
                end = s.index(IDS.eom, i + 1)
                out.append((i + 1, end))
                i = end + 1
            sentinels = 0
            continue
        if s[i] in IDS.masks:
            sentinels += 1
        i += 1
    return out


@settings(max_examples=200, deadline=None)
@given(packed_samples(), span_configs(), st.integers(0, 2**32 - 1))
def test_span_corruption_restores_every_document(packed, config, seed):
    raw, seq_len = packed
    sample = span_sample(raw, IDS, seq_len, np.random.default_rng(seed), config)
    assert_sample_shape(sample, seq_len)
    assert sample.objective == "span" and sample.prefix_len == 0
    restored = invert_span_stream(stream_of(sample), IDS)
    assert_documents_restored(restored, split_documents(raw, IDS.eod))
    stream = stream_of(sample)
    assert (stream == IDS.pad).sum() <= 6                       # the stream is used, not padded


@settings(max_examples=200, deadline=None)
@given(packed_samples(), span_configs(), st.integers(0, 2**32 - 1))
def test_moved_spans_are_whole_within_one_document_and_carry_the_loss(packed, config, seed):
    raw, seq_len = packed
    sample = span_sample(raw, IDS, seq_len, np.random.default_rng(seed), config)
    stream = stream_of(sample)
    loss_on_stream = np.concatenate(([0.0], sample.loss_mask))
    target = np.zeros(len(stream), dtype=bool)
    for start, end in moved_regions(stream):
        assert IDS.eod not in stream[start:end].tolist()        # no span crosses a document
        target[start:end + 1] = True                             # span tokens and its <eom>
    assert (loss_on_stream[target] == 1).all()
    special = np.isin(stream, (*IDS.masks, IDS.sep, IDS.pad))
    assert (loss_on_stream[special] == 0).all()                  # never a sentinel, <sep>, pad
    if not config.loss_on_context:
        assert (loss_on_stream[~target] == 0).all()
    # a sentinel in a context always has its moved copy, closed by <eom>, in the same sample
    assert (stream == IDS.eom).sum() == np.isin(stream, IDS.masks).sum() // 2


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 400), st.floats(0.01, 0.99), st.floats(1.0, 10.0), st.integers(1, 16),
       st.integers(0, 2**32 - 1))
def test_drawn_spans_are_disjoint_separated_and_cover_the_budget(n, ratio, mean, max_spans, seed):
    config = SpanConfig(mean_span_length=mean, max_spans=max_spans)
    num_noise, k = span_budget(n, ratio, config)
    assert 1 <= k <= max_spans and 1 <= num_noise < n
    starts, lengths = draw_spans(n, num_noise, k, np.random.default_rng(seed))
    assert len(starts) == len(lengths) == k
    assert lengths.min() >= 1 and lengths.sum() == num_noise
    assert starts[0] >= 0 and starts[-1] + lengths[-1] <= n
    assert (starts[1:] > starts[:-1] + lengths[:-1]).all()      # at least one kept token between


def test_span_statistics_follow_density_and_mean_length():
    config = SpanConfig(noise_density_min=0.15, noise_density_max=0.15, mean_span_length=3.0)
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(300):
        num_noise, k = span_budget(200, 0.15, config)
        lengths.append(draw_spans(200, num_noise, k, rng)[1])
    assert num_noise == 30 and k == 10
    all_lengths = np.concatenate(lengths)
    assert all_lengths.mean() == pytest.approx(3.0)
    assert all_lengths.max() > 6            # lengths vary, not a fixed 3


def test_worked_example_layout():
    # one document of 12 tokens then EOD; fixed density 0.25 -> 3 masked tokens in 1 span
    config = SpanConfig(noise_density_min=0.25, noise_density_max=0.25, mean_span_length=3.0)
    doc = list(range(100, 112))
    raw = np.array(doc + [IDS.eod] + [200] * 28, dtype=np.int64)
    sample = span_sample(raw, IDS, 40, np.random.default_rng(3), config)
    s = stream_of(sample).tolist()
    cut = s.index(IDS.masks[0])
    span_start = s.index(IDS.sep) + 2
    span = s[span_start:s.index(IDS.eom)]
    assert len(span) == 3
    assert s[:cut] + [IDS.masks[0]] + doc[cut + 3:] + [IDS.eod, IDS.sep, IDS.masks[0]] + span \
        + [IDS.eom] == s[:s.index(IDS.eom) + 1]
    assert s[:cut] + span + s[cut + 1:s.index(IDS.eod)] == doc


def test_short_remainder_is_kept_plain_and_documents_after_it_dropped():
    config = SpanConfig(noise_density_min=0.5, noise_density_max=0.5)
    raw = np.array([100, 101, 102, IDS.eod, 103, 104, 105, 106], dtype=np.int64)
    sample = span_sample(raw, IDS, 7, np.random.default_rng(0), config)
    s = stream_of(sample).tolist()
    assert len(s) == 8 and s[:3].count(IDS.masks[0]) == 1     # first document corrupted whole
    assert IDS.eom in s


def test_too_many_spans_for_the_tokenizer_names_the_key():
    ids = IDS.__class__(**{**IDS.__dict__, "masks": IDS.masks[:2]})
    with pytest.raises(ConfigError, match="objectives.span.max_spans=16"):
        span_sample(np.arange(30, 41), ids, 10, np.random.default_rng(0), SpanConfig())


@pytest.mark.parametrize("key, value, fragment", [
    ("noise_density_min", 0.0, "objectives.span.noise_density_min=0.0"),
    ("noise_density_max", 1.0, "objectives.span.noise_density_max=1.0"),
    ("mean_span_length", 0.5, "objectives.span.mean_span_length=0.5"),
    ("max_spans", 0, "objectives.span.max_spans=0"),
    ("max_spans", 17, "objectives.span.max_spans=17 must be in [1, 16]"),
])
def test_bad_span_config_names_the_key(key, value, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        SpanConfig(**{key: value}).validate()


@settings(max_examples=200, deadline=None)
@given(packed_samples(), span_configs(), st.integers(0, 2**32 - 1))
def test_sentinels_and_moved_spans_stay_in_their_documents_block(packed, config, seed):
    """With separate document attention a moved span must see its own context: each document's
    block (a run of Sample.doc_ids) holds its context, EOD, <sep> and moved spans. So undoing
    the corruption block by block gives what undoing it over the whole stream gives, and
    trailing <pad> is a block of its own."""
    raw, seq_len = packed
    sample = span_sample(raw, IDS, seq_len, np.random.default_rng(seed), config)
    stream = stream_of(sample)
    runs = document_runs(sample.doc_ids)
    blocks = [stream[a:b] for a, b in runs[:-1]] + [stream[runs[-1][0]:]]  # + the last label
    for block in blocks:
        assert (block == IDS.pad).all() or not (block[:-1] == IDS.pad).any()
    per_block = [invert_span_stream(block, IDS) for block in blocks
                 if not (block == IDS.pad).all()]
    assert all(len(docs) == 1 for docs in per_block[:-1])   # one document per block
    by_block = [d for docs in per_block for d in docs]
    whole = invert_span_stream(stream, IDS)
    assert [(d.tokens.tolist(), d.ends_with_eod) for d in by_block] == \
        [(d.tokens.tolist(), d.ends_with_eod) for d in whole]
