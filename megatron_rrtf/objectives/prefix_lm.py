"""Prefix-LM: a split point p; the first p positions attend to each other bidirectionally, later
positions causally; loss only where the target lies after the prefix.

With document attention separate (the default) every document of the packed sample gets its own
split, drawn in document order from the sample's generator; with packed, one split for the whole
sample (documents are not told apart). The rule is the same for a document of L input positions
(or the whole sample, L = seq_len): p is drawn uniformly from [max(1, ceil(min_prefix_fraction *
L)), min(L, floor(max_prefix_fraction * L))] (UL2's S-denoiser draws it uniformly too; the
bounds keep both a context and a target). Loss is on the labels of positions t >= start + p - 1:
the output at the prefix's last position sees only the prefix and predicts the first token after
it, so it counts; outputs inside the prefix see their own label and must not. <pad> labels never
count. An EOD belongs to the document it ends, so the output at a document's EOD predicts the
next document's first token from its own document only.
"""

from __future__ import annotations

import math

import numpy as np

from megatron_rrtf.config.objectives import PrefixLMConfig
from megatron_rrtf.objectives.packing import check_raw
from megatron_rrtf.objectives.sample import Sample, document_ids
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds


def prefix_bounds(seq_len: int, config: PrefixLMConfig) -> tuple[int, int]:
    """Inclusive range [lo, hi] of the prefix length p, 1 <= lo <= hi <= seq_len."""
    lo = max(1, math.ceil(config.min_prefix_fraction * seq_len))
    hi = min(seq_len, math.floor(config.max_prefix_fraction * seq_len))
    lo = min(lo, seq_len)
    return lo, max(lo, hi)


def prefix_lm_sample(raw: np.ndarray, ids: SpecialTokenIds, seq_len: int,
                     rng: np.random.Generator, config: PrefixLMConfig,
                     per_document: bool = True) -> Sample:
    """Causal tokens/labels with drawn bidirectional prefixes (one per document, or one per
    sample with per_document=False); see the module docstring."""
    raw = check_raw(raw, seq_len)
    docs = document_ids(raw, ids.eod)                                       # [s+1]
    labels = raw[1:].copy()                                                  # [s]
    prefix = np.zeros(seq_len, dtype=bool)                                   # [s]
    counts = np.zeros(seq_len, dtype=bool)                                   # [s]
    runs = _runs(docs[:-1]) if per_document else [(0, seq_len)]
    for start, length in runs:
        lo, hi = prefix_bounds(length, config)
        p = int(rng.integers(lo, hi + 1))
        prefix[start:start + p] = True
        counts[start + p - 1:start + length] = True
    loss = counts & (labels != ids.pad)
    return Sample(tokens=raw[:-1].copy(), labels=labels, loss_mask=loss.astype(np.float32),
                  doc_ids=docs[:-1].copy(), prefix_mask=prefix, objective="prefix_lm")


def _runs(doc_ids: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of equal ids, in order."""
    starts = np.flatnonzero(np.diff(doc_ids, prepend=doc_ids[0] - 1))
    return list(zip(starts.tolist(), np.diff(np.append(starts, len(doc_ids))).tolist()))


def prefix_lm_attention_mask(doc_ids: np.ndarray, prefix_mask: np.ndarray) -> np.ndarray:
    """The attention rule, as a reference: bool [s, s], True where query i may attend to key j:
    same document, and j <= i (causal) or both in the document's prefix. Dense, for tests; the
    model builds the same pattern from segments (model.documents)."""
    same = doc_ids[:, None] == doc_ids[None, :]
    causal = np.arange(len(doc_ids))[None, :] <= np.arange(len(doc_ids))[:, None]
    return same & (causal | (prefix_mask[:, None] & prefix_mask[None, :]))
