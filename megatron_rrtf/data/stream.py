"""Training and evaluation sample streams over preprocessed sources.

Why not megatron-core's GPTDataset / BlendedMegatronDatasetBuilder: GPTDataset shuffles the
documents of all epochs together (an epoch is not a unit: a sample has no epoch, and epoch e+1
may repeat a sample before epoch e ends), caches its indices as .npy files keyed on the whole
run's sample count (changing train_steps rebuilds them), and needs torch.distributed. We need a
per-sample epoch, "different epochs differ, none repeats within one", and resume from one
integer. So the index maths is ours, but thin: megatron-core's IndexedDataset reads the tokens,
its compiled `build_sample_idx` packs each epoch (packing.py) and its compiled
`build_blending_indices` interleaves sources by weight (blend.py). No torch.distributed needed.

Global sample g: blend -> (source s, its k-th sample); epoch = k // n_s, j = k % n_s; the epoch's
j-th shuffled packed sample. With data parallelism every rank walks the same global sequence:
`next_batch(b)` on rank r takes samples [c + r*b, c + (r+1)*b) and all ranks advance the
consumed counter c by b*dp_size (megatron's pretraining sampler layout), so the ranks' slices of
a global batch are disjoint and together complete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_rrtf.config import RunConfig, to_dict
from megatron_rrtf.data.blend import blend_indices
from megatron_rrtf.data.indexed import open_indexed
from megatron_rrtf.data.manifest import read_manifest
from megatron_rrtf.data.packing import (
    EpochIndex,
    build_epoch_index,
    packed_sample,
    samples_per_epoch,
)
from megatron_rrtf.errors import DataError
from megatron_rrtf.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class SourceSplit:
    """One source's split, opened: its IndexedDataset and packed-sample count per epoch."""

    name: str
    source_id: int
    dataset: object
    doc_lengths: np.ndarray
    tokens: int
    samples_per_epoch: int


class DocumentSubset:
    """Some documents of an IndexedDataset, renumbered 0..n-1 (what packing reads: `get`)."""

    def __init__(self, dataset, doc_ids: np.ndarray) -> None:
        self.dataset, self.doc_ids = dataset, np.asarray(doc_ids, dtype=np.int64)
        self.sequence_lengths = np.asarray(dataset.sequence_lengths)[self.doc_ids]

    def __len__(self) -> int:
        return len(self.doc_ids)

    def get(self, idx: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        return self.dataset.get(int(self.doc_ids[idx]), offset=offset, length=length)


def subset_doc_ids(doc_lengths: np.ndarray, fraction: float) -> np.ndarray:
    """The documents `train_fraction` keeps: whole documents in a fixed seeded order (seed 0,
    not data.seed: every run and seed sees the same sub-corpus) until they hold `fraction` of
    the tokens (at least one document), sorted; a smaller fraction keeps a subset of a larger
    one's documents."""
    lengths = np.asarray(doc_lengths, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(lengths))
    held = np.cumsum(lengths[order])
    keep = int(np.searchsorted(held, fraction * held[-1] - 0.5)) + 1 if len(held) else 0
    return np.sort(order[:min(max(keep, 1), len(order))])


def _open_split(config: RunConfig, manifest: dict, name: str, source_id: int,
                split: str) -> SourceSplit:
    entry = manifest["sources"][name]
    info = entry["splits"][split]
    dataset = open_indexed(Path(config.data.output_dir) / info["prefix"], info)
    fraction = config.data.sources[source_id].train_fraction
    if split == "train" and fraction < 1.0:
        dataset = DocumentSubset(dataset, subset_doc_ids(dataset.sequence_lengths, fraction))
    lengths = np.asarray(dataset.sequence_lengths)
    tokens = int(lengths.sum(dtype=np.int64)) if len(lengths) else 0
    return SourceSplit(name, source_id, dataset, lengths, tokens,
                       samples_per_epoch(tokens, config.model.seq_length))


def _checked_manifest(config: RunConfig, tokenizer: Tokenizer) -> dict:
    """The manifest, after checking it was made with this tokenizer and these sources."""
    manifest = read_manifest(config.data.output_dir)
    made_with = manifest.get("tokenizer", {})
    if made_with.get("fingerprint") != tokenizer.fingerprint:
        raise DataError(
            f"{config.data.output_dir} was tokenized with {made_with.get('path')} (fingerprint "
            f"{str(made_with.get('fingerprint'))[:12]}), not {tokenizer.path} "
            f"({tokenizer.fingerprint[:12]}); rerun `mrrtf preprocess` or set data.tokenizer")
    recorded = {s["name"]: s for s in manifest.get("config", {}).get("sources", [])}
    for source in config.data.sources:
        if source.name not in manifest["sources"]:
            raise DataError(f"source {source.name} is not in {config.data.output_dir}/manifest.json;"
                            " run `mrrtf preprocess` with this config")
        free = ("weight", "train_fraction")  # read at training time, not preprocessing
        now = {k: v for k, v in to_dict(source).items() if k not in free}
        then = {k: v for k, v in recorded.get(source.name, {}).items() if k not in free}
        if now != then:
            raise DataError(f"source {source.name} changed since it was preprocessed "
                            f"(was {then}, now {now}); rerun `mrrtf preprocess`")
    return manifest


class TrainStream:
    """Blended, packed, per-epoch shuffled training samples; state is one integer."""

    def __init__(self, splits: list[SourceSplit], weights: list[float], seq_length: int,
                 seed: int, dp_rank: int, dp_size: int, num_samples: int) -> None:
        if not 0 <= dp_rank < dp_size:
            raise DataError(f"dp_rank={dp_rank} must be in [0, dp_size={dp_size})")
        self.splits = splits
        self.seq_length = seq_length
        self.seed = seed
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.num_samples = num_samples
        self.consumed_samples = 0
        self._blended = [i for i, w in enumerate(weights) if w > 0]
        self._weights = [weights[i] for i in self._blended]
        self._blend_size = 0
        self._grow_blend(max(num_samples, 1))
        self._epochs: dict[tuple[int, int], EpochIndex] = {}
        self._warned_past_end = False

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.splits]

    @property
    def effective_epochs(self) -> dict[str, float]:
        """Passes over each source's training split that num_samples samples make."""
        counts = np.bincount(self._blend_source[:self.num_samples], minlength=len(self._blended))
        out = {s.name: 0.0 for s in self.splits}
        for blend_id, source_id in enumerate(self._blended):
            split = self.splits[source_id]
            out[split.name] = float(counts[blend_id]) / split.samples_per_epoch
        return out

    def _grow_blend(self, size: int) -> None:
        blend_id, self._blend_count = blend_indices(self._weights, size)
        self._blend_source = np.asarray(self._blended, dtype=np.int64)[blend_id]
        self._blend_size = size

    def _epoch_index(self, source_id: int, epoch: int) -> EpochIndex:
        key = (source_id, epoch)
        if key not in self._epochs:
            split = self.splits[source_id]
            for old in [k for k in self._epochs if k[0] == source_id and k[1] < epoch - 1]:
                del self._epochs[old]
            self._epochs[key] = build_epoch_index(split.doc_lengths, self.seq_length, self.seed,
                                                  source_id, epoch)
        return self._epochs[key]

    def sample(self, index: int) -> tuple[np.ndarray, int, int]:
        """(tokens [seq_length + 1], source id, epoch) of global sample `index`."""
        if index >= self._blend_size:
            if not self._warned_past_end:
                log.warning("training stream read past num_samples=%d; effective epochs grow "
                            "beyond those reported", self.num_samples)
                self._warned_past_end = True
            self._grow_blend(max(2 * self._blend_size, index + 1))
        source_id = int(self._blend_source[index])
        k = int(self._blend_count[index])
        split = self.splits[source_id]
        epoch, j = divmod(k, split.samples_per_epoch)
        epoch_index = self._epoch_index(source_id, epoch)
        return packed_sample(split.dataset, epoch_index, int(epoch_index.sample_order[j])), \
            source_id, epoch

    def next_batch(self, micro_batch_size: int) -> dict[str, np.ndarray]:
        """This rank's micro-batch: tokens [b, seq_length + 1], sample_index, epoch, source_id."""
        start = self.consumed_samples + self.dp_rank * micro_batch_size
        tokens = np.empty((micro_batch_size, self.seq_length + 1), dtype=np.int64)
        sample_index = np.arange(start, start + micro_batch_size, dtype=np.int64)
        epoch = np.empty(micro_batch_size, dtype=np.int64)
        source_id = np.empty(micro_batch_size, dtype=np.int64)
        for row, index in enumerate(sample_index):
            tokens[row], source_id[row], epoch[row] = self.sample(int(index))
        self.consumed_samples += micro_batch_size * self.dp_size
        return {"tokens": tokens, "sample_index": sample_index, "epoch": epoch,
                "source_id": source_id}

    def state_dict(self) -> dict[str, int]:
        return {"consumed_samples": self.consumed_samples, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise DataError(f"data stream state was saved with data.seed={state['seed']}, this "
                            f"run has {self.seed}; resuming would change the sample order")
        self.consumed_samples = int(state["consumed_samples"])


def build_train_stream(config: RunConfig, tokenizer: Tokenizer, dp_rank: int, dp_size: int,
                       num_samples: int) -> TrainStream:
    """The training stream over config.data.sources (preprocessed into data.output_dir)."""
    manifest = _checked_manifest(config, tokenizer)
    splits, weights = [], []
    for source_id, source in enumerate(config.data.sources):
        split = _open_split(config, manifest, source.name, source_id, "train")
        if source.weight > 0 and split.samples_per_epoch < 1:
            raise DataError(
                f"source {source.name} has {split.tokens} training tokens, fewer than one sample "
                f"of model.seq_length+1={config.model.seq_length + 1}; add data, lower "
                "model.seq_length, or set its weight to 0")
        splits.append(split)
        weights.append(source.weight)
    stream = TrainStream(splits, weights, config.model.seq_length, config.data.seed, dp_rank,
                         dp_size, num_samples)
    for name, epochs in stream.effective_epochs.items():
        split = splits[stream.source_names.index(name)]
        log.info("source %s: %d tokens, %d samples/epoch, %.3f effective epochs over %d samples",
                 name, split.tokens, split.samples_per_epoch, epochs, num_samples)
    return stream


class EvalStream:
    """Held-out samples of one domain, in a fixed order (no shuffle), this rank's share.

    Re-iterable; each item is np.int64 [seq_length + 1]. Sample i of the domain goes to rank
    i % dp_size, so the ranks' shares are disjoint and together complete.
    """

    def __init__(self, splits: list[SourceSplit], seq_length: int, dp_rank: int,
                 dp_size: int) -> None:
        self.splits = [s for s in splits if s.samples_per_epoch > 0]
        self.seq_length = seq_length
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self._indices = [build_epoch_index(s.doc_lengths, seq_length, 0, s.source_id, 0,
                                           shuffle=False) for s in self.splits]

    def __len__(self) -> int:
        total = sum(s.samples_per_epoch for s in self.splits)
        return len(range(self.dp_rank, total, self.dp_size))

    def __iter__(self) -> Iterator[np.ndarray]:
        i = 0
        for split, index in zip(self.splits, self._indices):
            for j in range(index.num_samples):
                if i % self.dp_size == self.dp_rank:
                    yield packed_sample(split.dataset, index, j)
                i += 1


def build_eval_streams(config: RunConfig, tokenizer: Tokenizer, dp_rank: int,
                       dp_size: int) -> dict[str, EvalStream]:
    """Per evaluation domain ("nl", "code/python", ...): its sources' held-out samples."""
    manifest = _checked_manifest(config, tokenizer)
    by_domain: dict[str, list[SourceSplit]] = {}
    for source_id, source in enumerate(config.data.sources):
        split = _open_split(config, manifest, source.name, source_id, "heldout")
        if split.samples_per_epoch < 1:
            log.warning("source %s: held-out split has %d tokens, no sample of %d; it adds "
                        "nothing to %s evaluation", source.name, split.tokens,
                        config.model.seq_length + 1, source.eval_domain)
        by_domain.setdefault(source.eval_domain, []).append(split)
    streams = {}
    for domain, splits in by_domain.items():
        stream = EvalStream(splits, config.model.seq_length, dp_rank, dp_size)
        if not stream.splits:
            log.warning("evaluation domain %s has no held-out sample; raise "
                        "data.heldout_fraction to evaluate it", domain)
            continue
        streams[domain] = stream
    return streams


def heldout_documents(config: RunConfig, tokenizer: Tokenizer, domain: str = "code"
                      ) -> list[np.ndarray]:
    """The held-out documents (token ids, EOD removed) of every source of `domain`, in
    stored order: what infilling metrics cut holes in (never trained on)."""
    manifest = _checked_manifest(config, tokenizer)
    docs: list[np.ndarray] = []
    for source_id, source in enumerate(config.data.sources):
        if source.domain != domain:
            continue
        split = _open_split(config, manifest, source.name, source_id, "heldout")
        for i in range(len(split.doc_lengths)):
            tokens = np.asarray(split.dataset.get(i), dtype=np.int64)
            docs.append(tokens[tokens != tokenizer.eod])
    return docs
