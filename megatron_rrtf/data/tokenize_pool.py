"""Encode a chunk of documents into one token array (EOD after each) plus per-document lengths;
the tokenize stage (megatron_rrtf.data.stages.write) sets the tokenizer once per task."""

from __future__ import annotations

import numpy as np

from megatron_rrtf.tokenizer.base import Tokenizer

_TOKENIZER: Tokenizer | None = None
_DTYPE: type[np.number] = np.int32
_THREADS: int | None = None
"""Native tokenizer threads per call: 1 in pipeline tasks (the tasks are the parallelism)."""


def use_tokenizer(tokenizer: Tokenizer, dtype: type[np.number], threads: int | None = 1) -> None:
    global _TOKENIZER, _DTYPE, _THREADS
    _TOKENIZER, _DTYPE, _THREADS = tokenizer, dtype, threads


def encode_chunk(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(all tokens of the chunk with EOD after each document, per-document lengths)."""
    assert _TOKENIZER is not None
    eod = _TOKENIZER.eod
    encoded = _TOKENIZER.encode_batch(texts, threads=_THREADS)
    lengths = np.fromiter((len(ids) + 1 for ids in encoded), dtype=np.int64, count=len(encoded))
    tokens = np.empty(int(lengths.sum()), dtype=_DTYPE)
    offset = 0
    for ids, length in zip(encoded, lengths):
        tokens[offset:offset + length - 1] = ids
        tokens[offset + length - 1] = eod
        offset += length
    return tokens, lengths
