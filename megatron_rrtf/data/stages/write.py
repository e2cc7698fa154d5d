"""Tokenize + write step: every document of the task counted (docs_in, skip reasons), kept ones
tokenized in chunks (EOD after each) into parts/<source>.<split>.<rank> (.bin/.idx, written
atomically), then parts/<rank>.json with the counts, also atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from megatron_rrtf.data.indexed import AtomicIndexedWriter, token_dtype
from megatron_rrtf.data.ingest import SKIP_REASONS, SPLITS
from megatron_rrtf.data.stages import SKIP


def part_prefix(folder: Path, source: str, split: str, rank: int) -> Path:
    return folder / f"{source}.{split}.{rank:05d}"


class TokenizeAndWrite(PipelineStep):
    name = "tokenize + write .bin/.idx"
    type = "💽 - WRITER"

    def __init__(self, folder: str, tokenizer_path: str, source_names: list[str],
                 task_sources: list[list[int]], chunk_docs: int, chunk_bytes: int,
                 extra_reasons: list[str]) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.tokenizer_path = tokenizer_path
        self.source_names = source_names
        self.task_sources = task_sources
        self.chunk_docs = chunk_docs
        self.chunk_bytes = chunk_bytes
        self.reasons = list(SKIP_REASONS) + extra_reasons

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        from megatron_rrtf.data import tokenize_pool
        from megatron_rrtf.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(self.tokenizer_path)
        dtype = token_dtype(tokenizer.vocab_size)
        tokenize_pool.use_tokenizer(tokenizer, dtype, threads=1)  # the task is the parallelism
        self.folder.mkdir(parents=True, exist_ok=True)
        counts = {self.source_names[s]: {"docs_in": 0, "docs_written": 0,
                                         "skipped": dict.fromkeys(self.reasons, 0)}
                  for s in self.task_sources[rank]}
        writers = {(name, split): AtomicIndexedWriter(part_prefix(self.folder, name, split, rank),
                                                      dtype)
                   for name in counts for split in SPLITS}
        pending: list[tuple[str, str]] = []
        texts: list[str] = []
        chars = 0

        def flush() -> None:
            tokens, lengths = tokenize_pool.encode_chunk(texts)
            offset = 0
            for key, length in zip(pending, lengths):
                writers[key].add(tokens[offset:offset + length])
                offset += length
            self.stat_update("tokens", value=int(offset))
            pending.clear()
            texts.clear()

        try:
            for doc in data:
                entry = counts[self.source_names[doc.metadata["source"]]]
                entry["docs_in"] += 1
                reason = doc.metadata.get(SKIP)
                if reason is not None:
                    entry["skipped"][reason] += 1
                    continue
                entry["docs_written"] += 1
                pending.append((self.source_names[doc.metadata["source"]],
                                doc.metadata["split"]))
                texts.append(doc.text)
                chars += len(doc.text)
                if len(texts) >= self.chunk_docs or chars >= self.chunk_bytes:
                    flush()
                    chars = 0
            if texts:
                flush()
            for name in counts:
                counts[name]["splits"] = {split: writers[name, split].commit()
                                          for split in SPLITS}
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        path = self.folder / f"{rank:05d}.json"
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(counts))
        os.replace(tmp, path)
