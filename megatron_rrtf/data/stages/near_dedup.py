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

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        bands = super().get_signature(shingles)
        # the whole signature (low 32 bits of each value) for VerifyPairs
        self._full[self._current] = np.concatenate(bands).astype(np.uint32)
        return bands

    def get_shingles(self, text: str) -> np.ndarray:
        import xxhash  # a datasets dependency; datatrove's own wrapper fails on xxhash 4 (str)

        shingles = code_shingles(text, self.config.n_grams)
        return np.fromiter((xxhash.xxh64_intdigest(s.encode("utf-8")) for s in shingles),
                           dtype=np.uint64, count=len(shingles)).reshape((-1, 1))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        self._full: dict[int, np.ndarray] = {}

        def still_kept():
            for index, doc in enumerate(d for d in data if kept(d)):
                self._current = index
                yield doc

        super().run(still_kept(), rank, world_size)
        full = np.zeros((len(self._full) and max(self._full) + 1, self.num_hashes), np.uint32)
        for index, signature in self._full.items():
            full[index] = signature
        path = Path(self.output_folder.path) / "full" / f"{rank:05d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, full)
        tmp.replace(path)


class VerifyPairs(PipelineStep):
    """Between datatrove's buckets and cluster stages (one task per band): keep a candidate
    pair only when its whole-signature Jaccard estimate (the share of equal MinHash values,
    +-0.03 at 252 hashes) reaches `jaccard`. LSH alone also pairs documents well below the
    threshold (a band agreeing by chance), so without this step ~20% of pairs at Jaccard
    0.5-0.7 were removed (benchmarks/bench_near_dedup.py)."""

    name = "near dedup 2b: verify pairs"
    type = "🫂 - DEDUP"

    def __init__(self, signatures: str, buckets: str, output: str, jaccard: float) -> None:
        super().__init__()
        self.signatures = Path(signatures) / "full"
        self.buckets = Path(buckets)
        self.output = Path(output)
        self.jaccard = jaccard

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        cache: dict[int, np.ndarray] = {}

        def signature(task: int, index: int) -> np.ndarray:
            if task not in cache:
                cache[task] = np.load(self.signatures / f"{task:05d}.npy", mmap_mode="r")
            return cache[task][index]

        for path in sorted(self.buckets.glob(f"{rank:05d}_*.dups")):
            raw = np.fromfile(path, dtype="<u4").reshape(-1, 4)
            keep = np.array([np.mean(signature(f1, d1) == signature(f2, d2)) >= self.jaccard
                             for f1, d1, f2, d2 in raw.tolist()], dtype=bool)
            self.stat_update("candidate_pairs", value=len(raw))
            self.stat_update("verified_pairs", value=int(keep.sum()))
            tmp = self.output / (path.name + ".tmp")
            raw[keep].tofile(tmp)
            tmp.replace(self.output / path.name)


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
