"""From ranked records to a training batch and its loss: the pieces the RRTF training loop calls.

    examples = examples_from_ranked(records, template)          # ranked JSONL lines -> examples
    batch = build_rrtf_batch(examples[i:j], encode, eos_id, pack=cfg.pack_candidates, max_len=S)
    logits = model(batch.candidates.tokens, batch.candidates.position_ids,
                   batch.candidates.attention_mask)               # (R, S, V)
    out = rrtf_batch_loss(logits, batch, cfg)                     # RankLossOutput; out.total

Only the code extracted from a response is trained on (PanGu-Coder2), followed by EOS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.rrtf.losses import RankLossOutput, ranking_loss
from megatron_rrtf.rrtf.packing import (
    CandidateBatch,
    CandidateGroup,
    candidate_logprobs,
    pack_candidates,
    pad_candidates,
    to_prompt_grid,
)
from megatron_rrtf.rrtf.problems import PromptTemplate


@dataclass(frozen=True)
class RankedExample:
    prompt: str
    codes: tuple[str, ...]
    scores: tuple[float, ...]
    is_teacher: tuple[bool, ...]


@dataclass
class RRTFBatch:
    candidates: CandidateBatch
    scores: Tensor
    """(B, K) float."""
    is_teacher: Tensor
    """(B, K) bool."""
    valid: Tensor
    """(B, K) bool."""


def examples_from_ranked(records: Iterable[Mapping[str, Any]],
                         template: PromptTemplate) -> list[RankedExample]:
    """Ranked JSONL records (align.rank) -> examples; responses with no code are left out, and
    problems left with no response are skipped."""
    out = []
    for rec in records:
        kept = [r for r in rec["responses"] if r["code"].strip()]
        if kept:
            out.append(RankedExample(
                prompt=template.format(rec["instruction"]),
                codes=tuple(r["code"] for r in kept),
                scores=tuple(float(r["score"]) for r in kept),
                is_teacher=tuple(bool(r["is_teacher"]) for r in kept)))
    return out


def build_rrtf_batch(
    examples: Sequence[RankedExample],
    encode: Callable[[str], list[int]],
    eos_id: int | None,
    pack: bool = True,
    max_len: int | None = None,
    pad_id: int = 0,
) -> RRTFBatch:
    """Tokenise prompts and response codes (+EOS); a response longer than max_len - prompt is
    truncated (its EOS then falls off). Packed or padded layout per `pack`."""
    groups = []
    for ex in examples:
        prompt = list(encode(ex.prompt))
        responses = []
        for code in ex.codes:
            ids = list(encode(code)) + ([eos_id] if eos_id is not None else [])
            if max_len is not None:
                ids = ids[:max(1, max_len - len(prompt))]
            responses.append(ids)
        groups.append(CandidateGroup(prompt, responses))
    candidates = (pack_candidates(groups, max_len=max_len, pad_id=pad_id) if pack
                  else pad_candidates(groups, pad_id=pad_id))
    k = max(len(ex.codes) for ex in examples)
    scores = torch.zeros(len(examples), k)
    teacher = torch.zeros(len(examples), k, dtype=torch.bool)
    valid = torch.zeros(len(examples), k, dtype=torch.bool)
    for b, ex in enumerate(examples):
        n = len(ex.codes)
        scores[b, :n] = torch.tensor(ex.scores)
        teacher[b, :n] = torch.tensor(ex.is_teacher)
        valid[b, :n] = True
    return RRTFBatch(candidates, scores, teacher, valid)


def loss_options(cfg: RRTFConfig) -> dict[str, Any]:
    """The config's loss settings as keyword arguments of `ranking_loss`."""
    return {"rank_weight": cfg.rank_weight, "sft_weight": cfg.sft_weight,
            "tie_weight": cfg.tie_weight, "length_penalty": cfg.length_penalty,
            "min_ft_score": cfg.min_ft_score}


def rrtf_batch_loss(logits: Tensor, batch: RRTFBatch, cfg: RRTFConfig,
                    reduction: str = "mean") -> RankLossOutput:
    """logits (R, S, V) of batch.candidates -> the configured ranking loss."""
    logp, lengths = candidate_logprobs(logits, batch.candidates)            # (C,), (C,)
    logp_grid, valid = to_prompt_grid(logp, batch.candidates)               # (B, K)
    len_grid, _ = to_prompt_grid(lengths.to(logp.dtype), batch.candidates, fill=1.0)
    device = logp.device
    return ranking_loss(cfg.loss, logp_grid, len_grid, batch.scores.to(device),
                        batch.is_teacher.to(device), valid & batch.valid.to(device),
                        reduction=reduction, **loss_options(cfg))
