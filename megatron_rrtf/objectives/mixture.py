"""Per-sample choice of objective by configured rates, reproducible from (seed, epoch, index).

Every sample gets its own `numpy.random.Generator`, seeded from SeedSequence((seed, epoch,
sample_index)) only: the objective is the first draw, the objective's own draws follow. So the
same sample comes out in any process, in any order, and after any resume, whatever was drawn
before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from megatron_rrtf.config.objectives import OBJECTIVE_NAMES, ObjectivesConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.objectives.causal import causal_sample
from megatron_rrtf.objectives.fim import Decode, Encode, fim_sample
from megatron_rrtf.objectives.prefix_lm import prefix_lm_sample
from megatron_rrtf.objectives.sample import Sample
from megatron_rrtf.objectives.span import span_sample
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds

OBJECTIVE_IDS: dict[str, int] = {name: i for i, name in enumerate(OBJECTIVE_NAMES)}
"""objective name -> objective_id in batches; OBJECTIVE_NAMES[id] goes back."""

__all__ = ["OBJECTIVE_NAMES", "OBJECTIVE_IDS", "ObjectiveMixture", "collate", "sample_rng"]


def sample_rng(seed: int, epoch: int, sample_index: int) -> np.random.Generator:
    """The generator of one sample; depends on nothing but these three numbers."""
    for name, value in (("seed", seed), ("epoch", epoch), ("sample_index", sample_index)):
        if int(value) < 0:
            raise ValueError(f"{name}={value} must be >= 0 to seed a sample")
    return np.random.default_rng(np.random.SeedSequence((int(seed), int(epoch),
                                                         int(sample_index))))


class ObjectiveMixture:
    """Turns packed samples into training samples, one objective drawn per sample."""

    def __init__(self, config: ObjectivesConfig, special_ids: SpecialTokenIds, seq_len: int,
                 encode: Encode | None = None, decode: Decode | None = None,
                 seed: int = 0, per_document_prefix: bool = True) -> None:
        """per_document_prefix: prefix-LM splits each document (data.document_attention
        separate) or the whole sample (packed)."""
        config.validate()
        if seq_len < 1:
            raise ConfigError(f"model.seq_length={seq_len} must be >= 1")
        self.config = config
        self.ids = special_ids
        self.seq_len = seq_len
        self.seed = seed
        self.per_document_prefix = per_document_prefix
        self.encode = encode
        self.decode = decode
        self.cumulative = np.cumsum(config.probabilities())
        rates = dict(zip(OBJECTIVE_NAMES, config.probabilities()))
        if rates["fim"] > 0 and (encode is None or decode is None):
            raise ConfigError("objectives.rates.fim > 0 needs the tokenizer's encode and decode "
                              "(FIM splits documents at character level)")
        if rates["span"] > 0 and config.span.max_spans > len(special_ids.masks):
            raise ConfigError(f"objectives.span.max_spans={config.span.max_spans} needs that many "
                              f"<mask_i> sentinels; the tokenizer has {len(special_ids.masks)}")

    def choose(self, rng: np.random.Generator) -> str:
        """Draw one objective name by the configured rates."""
        index = int(np.searchsorted(self.cumulative, rng.random(), side="right"))
        return OBJECTIVE_NAMES[min(index, len(OBJECTIVE_NAMES) - 1)]

    def apply(self, raw: np.ndarray, epoch: int, sample_index: int) -> Sample:
        """One packed sample (seq_len + 1 tokens) -> one training Sample."""
        rng = sample_rng(self.seed, epoch, sample_index)
        name = self.choose(rng)
        ids, seq_len, cfg = self.ids, self.seq_len, self.config
        if name == "causal":
            return causal_sample(raw, ids, seq_len)
        if name == "span":
            return span_sample(raw, ids, seq_len, rng, cfg.span)
        if name == "fim":
            return fim_sample(raw, ids, seq_len, rng, cfg.fim, self.encode, self.decode)
        return prefix_lm_sample(raw, ids, seq_len, rng, cfg.prefix_lm, self.per_document_prefix)

    def apply_batch(self, tokens: np.ndarray, epochs: Sequence[int] | np.ndarray,
                    sample_index: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """tokens [b, s+1] with each row's epoch [b] and sample index [b] -> collated batch."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or len(epochs) != len(tokens) or len(sample_index) != len(tokens):
            raise ValueError(f"apply_batch needs tokens [b, s+1] and epochs, sample_index [b]; got "
                             f"{tokens.shape}, {len(epochs)}, {len(sample_index)}")
        return collate([self.apply(row, int(e), int(i))
                        for row, e, i in zip(tokens, epochs, sample_index)])


def collate(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Stack samples: tokens, labels, loss_mask, doc_ids, prefix_mask [b, s]; objective_id [b]."""
    return {
        "tokens": np.stack([s.tokens for s in samples]),                       # [b, s] int64
        "labels": np.stack([s.labels for s in samples]),                       # [b, s] int64
        "loss_mask": np.stack([s.loss_mask for s in samples]),                 # [b, s] float32
        "doc_ids": np.stack([s.doc_ids for s in samples]),                     # [b, s] int32
        "prefix_mask": np.stack([s.prefix_mask for s in samples]),             # [b, s] bool
        "objective_id": np.array([OBJECTIVE_IDS[s.objective] for s in samples], dtype=np.int64),
    }
