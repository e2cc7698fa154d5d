"""Per-source epoch index maths: which documents, in which order, make which packed sample.

Pure functions of (document lengths, seq_length, seed, source id, epoch). Each epoch shuffles
the documents, packs them back to back (EOD already ends each document) into samples of
seq_length + 1 tokens that overlap by one token, as megatron's GPTDataset does (its compiled
`build_sample_idx` helper builds the start table), then shuffles the sample order. Every sample
of an epoch is used exactly once per epoch; different epochs get different orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def samples_per_epoch(num_tokens: int, seq_length: int) -> int:
    """Packed samples of seq_length + 1 tokens one pass over `num_tokens` tokens yields."""
    return max(0, (num_tokens - 1) // seq_length)


@dataclass(frozen=True)
class EpochIndex:
    doc_order: np.ndarray
    """Document ids in this epoch's order (int32)."""
    sample_starts: np.ndarray
    """[n + 1, 2]: (position in doc_order, token offset) where sample i starts; i + 1 ends it."""
    sample_order: np.ndarray
    """The epoch's j-th sample is packed sample sample_order[j]."""

    @property
    def num_samples(self) -> int:
        return len(self.sample_order)


def build_epoch_index(doc_lengths: np.ndarray, seq_length: int, seed: int, source_id: int,
                      epoch: int, shuffle: bool = True) -> EpochIndex:
    """The epoch's document order, sample start table and sample order (deterministic)."""
    from megatron.core.datasets.helpers import build_sample_idx

    lengths = np.ascontiguousarray(doc_lengths, dtype=np.int32)
    num_tokens = int(lengths.sum(dtype=np.int64))
    num_samples = samples_per_epoch(num_tokens, seq_length)
    if num_samples < 1 or seq_length < 2:
        raise ValueError(f"{num_tokens} tokens give no sample of {seq_length + 1} tokens")
    rng = np.random.default_rng([seed, source_id, epoch])
    if shuffle:
        doc_order = rng.permutation(len(lengths)).astype(np.int32)
    else:
        doc_order = np.arange(len(lengths), dtype=np.int32)
    starts = build_sample_idx(lengths, doc_order, seq_length, 1, num_tokens, True, True)
    assert len(starts) == num_samples + 1, (len(starts), num_samples)
    order = rng.permutation(num_samples) if shuffle else np.arange(num_samples)
    return EpochIndex(doc_order, starts, order)


def packed_sample(dataset, index: EpochIndex, i: int) -> np.ndarray:
    """Tokens of packed sample i (int64, seq_length + 1) read from an IndexedDataset."""
    (first, first_offset), (last, last_offset) = index.sample_starts[i], index.sample_starts[i + 1]
    docs = index.doc_order
    if first == last:
        return dataset.get(int(docs[first]), offset=int(first_offset),
                           length=int(last_offset - first_offset + 1)).astype(np.int64)
    parts = [dataset.get(int(docs[first]), offset=int(first_offset))]
    parts += [dataset.get(int(docs[k])) for k in range(first + 1, last)]
    parts.append(dataset.get(int(docs[last]), length=int(last_offset + 1)))
    return np.concatenate(parts).astype(np.int64)
