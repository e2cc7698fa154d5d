"""Tokenize chunks of documents in worker processes, results in input order, bounded memory."""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from megatron_rrtf.tokenizer.base import Tokenizer

_TOKENIZER: Tokenizer | None = None
_DTYPE: type[np.number] = np.int32
_THREADS: int | None = None
"""Native tokenizer threads per call: 1 in pool workers (the pool is the parallelism)."""


def _init_worker(tokenizer: Tokenizer, dtype: type[np.number], threads: int | None = 1) -> None:
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


class ChunkEncoder:
    """`map(chunks)` yields encode_chunk results in order; workers=1 runs in this process.

    At most 2 x workers chunks are in flight, so a source larger than memory streams through
    (Pool.imap would read the whole input ahead).
    """

    def __init__(self, tokenizer: Tokenizer, dtype: type[np.number], workers: int) -> None:
        self.workers = workers
        self._pool = None
        _init_worker(tokenizer, dtype, threads=None)
        if workers > 1:
            # fork: workers start in milliseconds and need no `if __name__ == "__main__"` guard
            # in the calling script (spawn re-imports it); they only run the tokenizer.
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
            self._pool = ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer, dtype))

    def map(self, chunks: Iterable[tuple[Any, list[str]]]
            ) -> Iterator[tuple[Any, tuple[np.ndarray, np.ndarray]]]:
        """(meta, texts) in -> (meta, encode_chunk(texts)) out, in the same order."""
        if self._pool is None:
            for meta, texts in chunks:
                yield meta, encode_chunk(texts)
            return
        pending: deque = deque()
        for meta, texts in chunks:
            pending.append((meta, self._pool.apply_async(encode_chunk, (texts,))))
            if len(pending) >= 2 * self.workers:
                meta_out, result = pending.popleft()
                yield meta_out, result.get()
        while pending:
            meta_out, result = pending.popleft()
            yield meta_out, result.get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> ChunkEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
