"""Held-out loss, perplexity and bits-per-byte per evaluation domain, for a training checkpoint.

Computed with our megatron model (TP=1/PP=1, this process), on the held-out samples that
`data.stream.build_eval_streams` gives the training loop, as causal LM samples (`causal_sample`:
loss on every non-pad label), so the loss is the training loop's `eval/<domain>/loss` when both
use the same samples (the loop uses the first `micro_batch_size x eval_batches` of each domain).
Not the exported HF model: export drops megatron's vocabulary padding rows, whose logits still
take a share of the softmax in training, so HF losses differ slightly from the training loop's.

bits-per-byte = total NLL in bits / UTF-8 bytes of the decoded label text (special tokens such as
<|endoftext|> decode to no bytes; each sample is decoded on its own, so a multi-byte character cut
by a sample boundary may count as U+FFFD).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megatron_rrtf.config import ParallelConfig, RunConfig
from megatron_rrtf.model.documents import DocumentAttention
from megatron_rrtf.objectives.causal import causal_sample
from megatron_rrtf.objectives.mixture import collate


def load_megatron_model(config: RunConfig, step_dir: Path, padded_vocab: int) -> torch.nn.Module:
    """The checkpoint's GPTModel, TP=1/PP=1, in eval mode (inside `process_groups`)."""
    from megatron_rrtf.checkpoint.model_io import load_model
    from megatron_rrtf.model.build import build_gpt_model

    model = build_gpt_model(dataclasses.replace(config, parallel=ParallelConfig()), padded_vocab)
    load_model(model, step_dir)
    return model.eval()


def heldout_samples(config: RunConfig, tokenizer, max_samples: int | None = None
                    ) -> dict[str, list[np.ndarray]]:
    """domain -> its first `max_samples` held-out samples (all if None), seq_length+1 tokens."""
    from megatron_rrtf.data.stream import build_eval_streams

    streams = build_eval_streams(config, tokenizer, dp_rank=0, dp_size=1)
    return {domain: list(itertools.islice(iter(stream), max_samples))
            for domain, stream in streams.items()}


@torch.no_grad()
def score_samples(model: torch.nn.Module, samples: list[np.ndarray], ids, seq_len: int,
                  decode, batch_size: int = 8, separate_documents: bool = True,
                  dense_mask: bool = False) -> dict[str, Any]:
    """NLL of causal LM samples under a megatron GPTModel: loss (nats/token), perplexity,
    bits_per_byte, and the counts they come from. `decode(ids) -> str` drops special tokens.
    Documents attend as in training (data.document_attention; dense_mask for megatron's local
    attention)."""
    nll, tokens, nbytes = 0.0, 0, 0
    for start in range(0, len(samples), batch_size):
        batch = collate([causal_sample(s, ids, seq_len) for s in samples[start:start + batch_size]])
        tok = torch.from_numpy(batch["tokens"]).long()                     # [b, s]
        labels = torch.from_numpy(batch["labels"]).long()                  # [b, s]
        loss_mask = torch.from_numpy(batch["loss_mask"]).float()           # [b, s]
        layout = DocumentAttention.build(batch["doc_ids"], batch["prefix_mask"],
                                         separate_documents)
        per_token = model(tok, layout.position_ids, layout.model_mask(dense_mask),
                          labels=labels).float()                            # [b, s] nats
        nll += float((per_token * loss_mask).sum(dtype=torch.float64))
        tokens += int(loss_mask.sum())
        for row_labels, row_mask in zip(batch["labels"], batch["loss_mask"]):
            nbytes += len(decode(row_labels[row_mask > 0].tolist()).encode("utf-8"))
    loss = nll / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf,
            "bits_per_byte": nll / math.log(2) / max(nbytes, 1), "num_samples": len(samples),
            "num_tokens": tokens, "num_bytes": nbytes}


def heldout_perplexity(config: RunConfig, step_dir: Path, max_samples: int | None = None,
                       batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """Per evaluation domain: loss, perplexity, bits_per_byte, num_samples/tokens/bytes (in a
    world of one, set up and torn down here)."""
    from megatron_rrtf.parallel.init import process_groups
    from megatron_rrtf.tokenizer.loader import load_tokenizer

    tokenizer = load_tokenizer(config.data.tokenizer)
    m = config.model
    with process_groups(ParallelConfig(), config.train.seed):
        model = load_megatron_model(config, step_dir,
                                    m.padded_vocab_for(tokenizer.vocab_size))
        return _score_domains(model, config, tokenizer, max_samples, batch_size)


def _score_domains(model, config: RunConfig, tokenizer, max_samples: int | None,
                   batch_size: int) -> dict[str, dict[str, Any]]:
    m = config.model
    special = tokenizer.special_ids if _has_all_special(tokenizer) else _causal_ids(tokenizer)
    drop = {i for i in (tokenizer.token_to_id(t) for t in _special_names()) if i is not None}

    def decode(ids: list[int]) -> str:
        return tokenizer.decode([i for i in ids if i not in drop])

    return {domain: score_samples(model, samples, special, m.seq_length, decode, batch_size,
                                  config.data.document_attention == "separate",
                                  m.attention_backend == "local")
            for domain, samples in heldout_samples(config, tokenizer, max_samples).items()
            if samples}


def _special_names() -> list[str]:
    from megatron_rrtf.tokenizer.special_tokens import special_tokens

    return special_tokens()


def _has_all_special(tokenizer) -> bool:
    return all(tokenizer.token_to_id(t) is not None for t in _special_names())


def _causal_ids(tokenizer):
    """causal_sample needs only pad; a tokenizer without the infill tokens still evaluates."""
    from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds

    eod, pad = tokenizer.eod, tokenizer.pad
    return SpecialTokenIds(eod=eod, pad=pad, sep=-1, eom=-1, fim_prefix=-1, fim_middle=-1,
                           fim_suffix=-1, fim_pad=-1, masks=())
