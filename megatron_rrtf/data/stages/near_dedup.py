"""Near dedup: datatrove's MinHash LSH stages (signature -> buckets -> cluster) over code-aware
shingles, with our exact verification between buckets and cluster (CandidateShingles saves the
shingle hashes of the documents in candidate pairs, VerifyPairs keeps a pair when their exact
Jaccard reaches the threshold), then a step that marks the documents the clusters drop as
near_duplicate.

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
from megatron_rrtf.errors import DataError

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


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """The code shingles of `text` as sorted, distinct 64-bit xxhash values (uint64). Exact
    Jaccard is computed on these: two different shingles collide with probability 2^-64, so a
    document pair with m distinct shingles between them has any collision with probability
    below m^2 / 2^65 (2.7e-8 at a million shingles), and one collision moves the Jaccard by at
    most 1/m."""
    import xxhash  # a datasets dependency; datatrove's own wrapper fails on xxhash 4 (str)

    shingles = code_shingles(text, n)
    hashes = np.fromiter((xxhash.xxh64_intdigest(s.encode("utf-8")) for s in shingles),
                         dtype=np.uint64, count=len(shingles))
    return np.unique(hashes)


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted, distinct hash arrays."""
    if a.size == 0 and b.size == 0:
        return 1.0
    common = np.intersect1d(a, b, assume_unique=True).size
    return common / (a.size + b.size - common)


class CodeMinhashSignature(MinhashDedupSignature):
    """datatrove's signature stage over code shingles of the documents still kept (a
    document's index is its position among the task's still-kept documents, as in every near
    dedup step here)."""

    name = "near dedup 1: MinHash signatures (code shingles)"

    def __init__(self, folder: str, cfg: NearDedupConfig) -> None:
        super().__init__(output_folder=folder, config=minhash_config(cfg),
                         language=CodeWordTokenizer())

    def get_shingles(self, text: str) -> np.ndarray:
        return shingle_hashes(text, self.config.n_grams).reshape((-1, 1))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        super().run((d for d in data if kept(d)), rank, world_size)


def candidate_docs(buckets: Path, task: int) -> set[int]:
    """The indices of `task`'s documents named by any candidate pair of datatrove's buckets
    stage (rows task1, doc1, task2, doc2), read one band file at a time."""
    wanted: set[int] = set()
    for path in sorted(buckets.glob("*.dups")):
        pairs = np.fromfile(path, dtype="<u4").reshape(-1, 4)
        wanted.update(pairs[pairs[:, 0] == task, 1].tolist())
        wanted.update(pairs[pairs[:, 2] == task, 3].tolist())
    return wanted


class CandidateShingles(PipelineStep):
    """Between datatrove's buckets stage and VerifyPairs (one task per data task): re-reads
    the task's documents (the same read + marks the signature stage saw, so indices line up)
    and saves the sorted shingle hashes of only the documents that are in some candidate pair:
    <folder>/<task>.bin (uint64 values, 8 bytes per shingle) and <task>.idx.npy (document
    indices and their end offsets), each written to a temporary name first."""

    name = "near dedup 2b: shingles of candidate documents"
    type = "🫂 - DEDUP"

    def __init__(self, buckets: str, folder: str, ngram: int) -> None:
        super().__init__()
        self.buckets = Path(buckets)
        self.folder = Path(folder)
        self.ngram = ngram

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        with self.track_time(unit="task"):
            self._run(data, rank)

    def _run(self, data: DocumentsPipeline, rank: int) -> None:
        wanted = candidate_docs(self.buckets, rank)
        self.folder.mkdir(parents=True, exist_ok=True)
        bin_path, idx_path = self.folder / f"{rank:05d}.bin", self.folder / f"{rank:05d}.idx.npy"
        docs, ends, end = [], [], 0
        tmp = bin_path.with_name(bin_path.name + ".tmp")
        with open(tmp, "wb") as out:
            for index, doc in enumerate(d for d in data if kept(d)):
                if index in wanted:
                    hashes = shingle_hashes(doc.text, self.ngram)
                    out.write(hashes.astype("<u8").tobytes())
                    end += hashes.size
                    docs.append(index)
                    ends.append(end)
        self.stat_update("candidate_docs", value=len(docs))
        self.stat_update("shingles_saved", value=end)
        if len(docs) != len(wanted):
            raise DataError(f"near dedup: task {rank} has {len(docs)} of the {len(wanted)} "
                            "documents its candidate pairs name; the inputs changed since the "
                            f"signature stage: delete {self.folder.parent} and rerun")
        tmp.replace(bin_path)
        tmp_idx = idx_path.with_name(idx_path.name + ".tmp.npy")
        np.save(tmp_idx, np.array([docs, ends], dtype=np.int64).reshape(2, -1))
        tmp_idx.replace(idx_path)


class VerifyPairs(PipelineStep):
    """Between datatrove's buckets and cluster stages (one task per band): keep a candidate
    pair only when the exact Jaccard similarity of the two documents' code-shingle sets (from
    CandidateShingles) reaches `jaccard`. LSH alone also pairs documents well below the
    threshold (a band agreeing by chance), and a whole-signature estimate (+-0.03 at 252
    hashes) removed 1.5-2.7% of the pairs just below 0.7 (benchmarks/bench_near_dedup.py)."""

    name = "near dedup 2c: verify pairs (exact Jaccard)"
    type = "🫂 - DEDUP"

    def __init__(self, shingles: str, buckets: str, output: str, jaccard: float) -> None:
        super().__init__()
        self.shingles = Path(shingles)
        self.buckets = Path(buckets)
        self.output = Path(output)
        self.jaccard = jaccard

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        with self.track_time(unit="band"):
            self._run(rank)

    def _run(self, rank: int) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

        def hashes(task: int, index: int) -> np.ndarray:
            if task not in cache:
                docs, ends = np.load(self.shingles / f"{task:05d}.idx.npy")
                values = (np.memmap(self.shingles / f"{task:05d}.bin", dtype="<u8", mode="r")
                          if len(docs) and ends[-1] else np.zeros(0, np.uint64))
                cache[task] = docs, ends, values
            docs, ends, values = cache[task]
            at = int(np.searchsorted(docs, index))
            if at == len(docs) or docs[at] != index:
                raise DataError(f"near dedup: no shingles saved for document {index} of task "
                                f"{task}; delete {self.shingles.parent} and rerun")
            return values[(ends[at - 1] if at else 0):ends[at]]

        for path in sorted(self.buckets.glob(f"{rank:05d}_*.dups")):
            raw = np.fromfile(path, dtype="<u4").reshape(-1, 4)
            keep = np.array([exact_jaccard(hashes(f1, d1), hashes(f2, d2)) >= self.jaccard
                             for f1, d1, f2, d2 in raw.tolist()], dtype=bool)
            self.stat_update("candidate_pairs", value=len(raw))
            self.stat_update("verified_pairs", value=int(keep.sum()))
            tmp = self.output / (path.name + ".tmp")
            raw[keep].reshape(-1, 4).tofile(tmp)
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
