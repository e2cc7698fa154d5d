"""Near dedup: datatrove's MinHash LSH stages (signature -> buckets -> cluster) over code-aware
shingles, then a step that marks the documents its clusters drop as near_duplicate.

Shingles as BigCode's near-deduplication (bigcode-dataset, near_deduplication): the text is
split on every character that is not a letter, digit or underscore, empty pieces dropped, case
kept, and each n consecutive tokens joined by a space is one shingle. A document with fewer than
n tokens has no shingles and is never a near duplicate. Only documents kept so far (after ingest
checks and exact dedup) get a signature, and the mark step counts them the same way."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from megatron_rrtf.config.data import NearDedupConfig
from megatron_rrtf.data.stages import SKIP, kept

NON_ALPHANUMERIC = re.compile(r"[^A-Za-z_0-9]+")


def code_tokens(text: str) -> list[str]:
    return [t for t in NON_ALPHANUMERIC.split(text) if t]


def code_shingles(text: str, n: int) -> set[str]:
    """The set of n-token shingles of `text` (BigCode's code-aware split)."""
    tokens = code_tokens(text)
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


class CodeWordTokenizer(WordTokenizer):
    """Splits on non-alphanumerics; given to datatrove so it loads no language model."""

    def word_tokenize(self, text: str) -> list[str]:
        return code_tokens(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return text.splitlines()

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"[A-Za-z_0-9]+", text)]


def minhash_config(cfg: NearDedupConfig) -> MinhashConfig:
    return MinhashConfig(n_grams=cfg.ngram, num_buckets=cfg.bands, hashes_per_bucket=cfg.rows,
                         seed=cfg.seed, hash_config=HashConfig(precision=64, hash_fc="xxhash"))


class CodeMinhashSignature(MinhashDedupSignature):
    """datatrove's signature stage over code shingles of the documents still kept."""

    name = "near dedup 1: MinHash signatures (code shingles)"

    def __init__(self, folder: str, cfg: NearDedupConfig) -> None:
        super().__init__(output_folder=folder, config=minhash_config(cfg),
                         language=CodeWordTokenizer())

    def get_shingles(self, text: str) -> np.ndarray:
        import xxhash  # a datasets dependency; datatrove's own wrapper fails on xxhash 4 (str)

        shingles = code_shingles(text, self.config.n_grams)
        return np.fromiter((xxhash.xxh64_intdigest(s.encode("utf-8")) for s in shingles),
                           dtype=np.uint64, count=len(shingles)).reshape((-1, 1))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        return super().run((doc for doc in data if kept(doc)), rank, world_size)


class NearDuplicateMark(PipelineStep):
    """Marks the kept documents whose index is in datatrove's <rank>.remove file."""

    name = "near dedup 4: mark"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = Path(folder)

    def run(self, data: DocumentsPipeline, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        path = self.folder / f"{rank:06d}.remove"
        raw = path.read_bytes() if path.is_file() else b""
        removed = set(struct.unpack(f"<{len(raw) // 4}I", raw))
        index = 0
        for doc in data:
            if kept(doc):
                if index in removed:
                    doc.metadata[SKIP] = "near_duplicate"
                    self.stat_update("near_duplicate")
                index += 1
            yield doc
