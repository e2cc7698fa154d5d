"""data.sources[i].train_fraction: a fixed sub-corpus (the epochs axis of the comparison)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from megatron_rrtf.data.stream import build_train_stream, subset_doc_ids
from megatron_rrtf.errors import ConfigError


def with_fraction(config, fraction, seed=None):
    config = copy.deepcopy(config)
    config.data.sources[0].train_fraction = fraction
    if seed is not None:
        config.data.seed = seed
    return config


@given(st.lists(st.integers(1, 500), min_size=1, max_size=60),
       st.floats(min_value=0.01, max_value=1.0))
def test_the_kept_documents_hold_the_share_of_tokens_fixed_and_nested(lengths, fraction):
    lengths = np.asarray(lengths)
    kept = subset_doc_ids(lengths, fraction)
    assert np.array_equal(kept, subset_doc_ids(lengths, fraction)) and len(kept) >= 1
    assert set(kept) <= set(subset_doc_ids(lengths, min(1.0, fraction * 2)))
    share = lengths[kept].sum() / lengths.sum()
    assert share >= fraction - 1e-9 or len(kept) == len(lengths)
    assert len(kept) == 1 or share - lengths[kept].max() / lengths.sum() < fraction + 1e-9
    assert np.array_equal(subset_doc_ids(lengths, 1.0), np.arange(len(lengths)))


def test_a_quarter_of_the_documents_gives_four_times_the_epochs(tiny_data_config,
                                                                tiny_tokenizer):
    full = build_train_stream(with_fraction(tiny_data_config, 1.0), tiny_tokenizer, 0, 1, 200)
    quarter = build_train_stream(with_fraction(tiny_data_config, 0.25), tiny_tokenizer, 0, 1,
                                 200)
    ratio = quarter.effective_epochs["py"] / full.effective_epochs["py"]
    assert 3.0 < ratio < 5.5  # documents differ in length: about 4
    assert full.effective_epochs["prose"] == quarter.effective_epochs["prose"]


def test_every_data_seed_reads_the_same_sub_corpus_and_nothing_else(tiny_data_config,
                                                                   tiny_tokenizer):
    streams = [build_train_stream(with_fraction(tiny_data_config, 0.25, seed), tiny_tokenizer,
                                  0, 1, 400) for seed in (1, 2)]
    subsets = [s.splits[s.source_names.index("py")].dataset for s in streams]
    assert np.array_equal(subsets[0].doc_ids, subsets[1].doc_ids)
    kept = {t for i in range(len(subsets[0])) for t in subsets[0].get(i).tolist()}
    for stream in streams:
        py = stream.source_names.index("py")
        seen = {t for i in range(400) if stream.sample(i)[1] == py
                for t in stream.sample(i)[0].tolist()}
        assert seen and seen <= kept


def test_a_fraction_outside_zero_to_one_is_refused(tiny_data_config):
    with pytest.raises(ConfigError, match=r"train_fraction=0.0 must be in \(0, 1\]"):
        with_fraction(tiny_data_config, 0.0).data.sources[0].validate("data.sources[0]")
