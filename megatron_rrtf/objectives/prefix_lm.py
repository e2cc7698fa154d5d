"""Prefix-LM: one split point p per sample; tokens[:p] attend to each other bidirectionally,
later positions causally.

p is drawn uniformly from [max(1, ceil(min_prefix_fraction * seq_len)),
min(seq_len, floor(max_prefix_fraction * seq_len))] (UL2's S-denoiser draws it uniformly too; the
bounds keep both a context and a target in every sample). Loss is on labels[t] for t >= p - 1,
i.e. on every *token* at index >= p of the raw sample: the output at position p - 1 sees only
tokens[:p] (the prefix) and predicts tokens[p], so it counts; outputs at t < p - 1 see their own
label inside the bidirectional prefix and must not. <pad> labels never count.
"""

from __future__ import annotations

import math

import numpy as np

from megatron_rrtf.config.objectives import PrefixLMConfig
from megatron_rrtf.objectives.packing import check_raw
from megatron_rrtf.objectives.sample import Sample
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds


def prefix_bounds(seq_len: int, config: PrefixLMConfig) -> tuple[int, int]:
    """Inclusive range [lo, hi] of the prefix length p, 1 <= lo <= hi <= seq_len."""
    lo = max(1, math.ceil(config.min_prefix_fraction * seq_len))
    hi = min(seq_len, math.floor(config.max_prefix_fraction * seq_len))
    lo = min(lo, seq_len)
    return lo, max(lo, hi)


def prefix_lm_sample(raw: np.ndarray, ids: SpecialTokenIds, seq_len: int,
                     rng: np.random.Generator, config: PrefixLMConfig) -> Sample:
    """Causal tokens/labels with a drawn prefix_len; loss on labels at raw index >= prefix_len."""
    raw = check_raw(raw, seq_len)
    lo, hi = prefix_bounds(seq_len, config)
    p = int(rng.integers(lo, hi + 1))
    labels = raw[1:].copy()                                                  # [s]
    loss = (np.arange(seq_len) >= p - 1) & (labels != ids.pad)             # [s]
    return Sample(tokens=raw[:-1].copy(), labels=labels, loss_mask=loss.astype(np.float32),
                  prefix_len=p, objective="prefix_lm")


def prefix_lm_attention_mask(seq_len: int, prefix_len: int) -> np.ndarray:
    """Reference mask, bool [seq_len, seq_len], True where query i may attend to key j:
    j <= i (causal) or both i, j < prefix_len (bidirectional prefix). Dense, so for CPU SDPA and
    tests; GPU kernels build the same pattern without materialising it (docs/objectives.md)."""
    query = np.arange(seq_len)[:, None]
    key = np.arange(seq_len)[None, :]
    return (key <= query) | ((query < prefix_len) & (key < prefix_len))
