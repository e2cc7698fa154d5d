"""Causal LM: the packed sample shifted by one, loss everywhere except on <pad> labels."""

import numpy as np
import pytest
from hypothesis import given, settings
from objectives_strategies import (
    IDS,
    assert_eod_ends_its_document,
    assert_sample_shape,
    document_runs,
    packed_samples,
)

from megatron_rrtf.errors import DataError
from megatron_rrtf.objectives.causal import causal_sample


@settings(max_examples=100, deadline=None)
@given(packed_samples())
def test_causal_is_the_shifted_sample_with_loss_off_pad(packed):
    raw, seq_len = packed
    raw = raw.copy()
    raw[len(raw) - len(raw) // 3:] = IDS.pad          # a padded tail (empty for short samples)
    sample = causal_sample(raw, IDS, seq_len)
    assert_sample_shape(sample, seq_len)
    assert (sample.tokens == raw[:-1]).all() and (sample.labels == raw[1:]).all()
    assert (sample.loss_mask == (raw[1:] != IDS.pad)).all()
    assert sample.prefix_len == 0 and sample.objective == "causal"
    assert_eod_ends_its_document(sample, IDS)
    # one document per run: a run holds no EOD but at its end
    for start, end in document_runs(sample.doc_ids):
        assert not (sample.tokens[start:end - 1] == IDS.eod).any()


@pytest.mark.parametrize("raw", [np.zeros(5, dtype=np.int64), np.zeros((2, 4), dtype=np.int64),
                                 np.zeros(4, dtype=np.float32)])
def test_wrong_packed_sample_is_refused_clearly(raw):
    with pytest.raises(DataError, match="packed sample"):
        causal_sample(raw, IDS, 3)
