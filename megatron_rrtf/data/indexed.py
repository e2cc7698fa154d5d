"""megatron-core indexed datasets (.bin/.idx): crash-safe writing and validated opening."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np

from megatron_rrtf.errors import DataError

log = logging.getLogger(__name__)


def token_dtype(vocab_size: int) -> type[np.number]:
    """uint16 when every id fits, else int32 (megatron-core's DType.optimal_dtype rule)."""
    return np.uint16 if vocab_size < 65500 else np.int32


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class AtomicIndexedWriter:
    """Write one indexed dataset under temporary names; `commit()` makes it appear.

    commit(): fsync both files, delete any old .idx, rename .bin, then rename .idx last. A crash
    at any point leaves either the old pair, a .bin without .idx (not loadable), or the new pair:
    never a loadable .idx describing the wrong .bin.
    """

    def __init__(self, prefix: Path, dtype: type[np.number]) -> None:
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        self.prefix = Path(prefix)
        self.bin_path = self.prefix.with_name(self.prefix.name + ".bin")
        self.idx_path = self.prefix.with_name(self.prefix.name + ".idx")
        self._tmp_bin = self.bin_path.with_name(self.bin_path.name + f".tmp{os.getpid()}")
        self._tmp_idx = self.idx_path.with_name(self.idx_path.name + f".tmp{os.getpid()}")
        self._builder = IndexedDatasetBuilder(str(self._tmp_bin), dtype=dtype)
        self.docs = 0
        self.tokens = 0

    def add(self, tokens: np.ndarray) -> None:
        """One document (EOD already appended); never empty."""
        if len(tokens) == 0:
            raise DataError(f"internal: empty document for {self.prefix}")
        self._builder.add_document(tokens, [len(tokens)])
        self.docs += 1
        self.tokens += len(tokens)

    def append(self, prefix: Path) -> None:
        """Append every document of the indexed dataset at `prefix` (e.g. a task's part), one
        at a time (megatron's builder.add_index calls gc.collect() per part: seconds each)."""
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        prefix = Path(prefix)
        if prefix.with_name(prefix.name + ".bin").stat().st_size == 0:
            return
        dataset = IndexedDataset(str(prefix), mmap=True)
        for i in range(len(dataset)):
            self.add(dataset[i])

    def commit(self) -> dict[str, int]:
        self._builder.finalize(str(self._tmp_idx))
        _fsync(self._tmp_bin)
        _fsync(self._tmp_idx)
        self.idx_path.unlink(missing_ok=True)
        os.replace(self._tmp_bin, self.bin_path)
        os.replace(self._tmp_idx, self.idx_path)
        dir_fd = os.open(self.prefix.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return {"docs": self.docs, "tokens": self.tokens,
                "bin_bytes": self.bin_path.stat().st_size,
                "idx_bytes": self.idx_path.stat().st_size}

    def abort(self) -> None:
        try:
            self._builder.data_file.close()
        except (OSError, ValueError):
            pass
        self._tmp_bin.unlink(missing_ok=True)
        self._tmp_idx.unlink(missing_ok=True)


def open_indexed(prefix: str | Path, expect: dict[str, int] | None = None):
    """Open `prefix`.bin/.idx as a megatron-core IndexedDataset after checking that the two
    agree (and match `expect` from manifest.json: docs, tokens, bin_bytes, idx_bytes); any
    mismatch, truncation or corruption is a DataError naming the file and the fix."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    prefix = Path(prefix)
    bin_path = prefix.with_name(prefix.name + ".bin")
    idx_path = prefix.with_name(prefix.name + ".idx")
    fix = "delete it and rerun `mrrtf preprocess` to rebuild it"
    for path in (bin_path, idx_path):
        if not path.is_file():
            raise DataError(f"{path} is missing (an interrupted preprocess?); rerun `mrrtf "
                            "preprocess`")
    if expect is not None:
        for key, path in (("bin_bytes", bin_path), ("idx_bytes", idx_path)):
            if key in expect and path.stat().st_size != expect[key]:
                raise DataError(f"{path} has {path.stat().st_size} bytes, manifest.json says "
                                f"{expect[key]}: truncated or replaced; {fix}")
    try:
        logging.getLogger("megatron.core.datasets.indexed_dataset").setLevel(logging.WARNING)
        # an empty split (every document held out or skipped) has a 0-byte .bin: no mmap
        dataset = IndexedDataset(str(prefix), mmap=bin_path.stat().st_size > 0)
    except (AssertionError, ValueError, OSError, struct.error, KeyError) as exc:
        raise DataError(f"{idx_path} is corrupt ({type(exc).__name__}: {exc}); {fix}") from exc
    lengths = dataset.index.sequence_lengths
    pointers = dataset.index.sequence_pointers
    itemsize = np.dtype(dataset.index.dtype).itemsize
    bin_size = bin_path.stat().st_size
    if len(lengths):
        expected_pointers = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)]) * itemsize
        if (lengths < 0).any() or not np.array_equal(pointers, expected_pointers):
            raise DataError(f"{idx_path} is corrupt (sequence pointers disagree with lengths); {fix}")
    total = int(lengths.sum(dtype=np.int64)) if len(lengths) else 0
    if total * itemsize != bin_size:
        raise DataError(f"{bin_path} has {bin_size} bytes but {idx_path} describes "
                        f"{total * itemsize}: the pair does not match; {fix}")
    if expect is not None and (expect.get("docs", len(lengths)) != len(lengths)
                               or expect.get("tokens", total) != total):
        raise DataError(f"{idx_path} holds {len(lengths)} docs / {total} tokens, manifest.json "
                        f"says {expect.get('docs')} / {expect.get('tokens')}; {fix}")
    return dataset
