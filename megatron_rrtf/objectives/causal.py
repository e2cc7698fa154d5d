"""Causal LM: the packed sample shifted by one; loss on every label that is not padding."""

from __future__ import annotations

import numpy as np

from megatron_rrtf.objectives.packing import check_raw
from megatron_rrtf.objectives.sample import Sample, document_ids, sample_from_stream
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds


def causal_sample(raw: np.ndarray, ids: SpecialTokenIds, seq_len: int) -> Sample:
    """tokens = raw[:-1], labels = raw[1:], loss where the label is not <pad>."""
    raw = check_raw(raw, seq_len)
    return sample_from_stream(raw, raw != ids.pad, "causal", document_ids(raw, ids.eod))

