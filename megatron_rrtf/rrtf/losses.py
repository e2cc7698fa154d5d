"""Ranking losses over candidate responses: PanGu-Coder2's RRTF (default) and RRHF.

Inputs are per prompt and per candidate, laid out [B, K] (B prompts, up to K candidates each;
`valid` marks the real ones, a 1-D [K] input is one prompt):
  logp_sum    summed log-prob of each candidate's response tokens (differentiable)
  lengths     each response's OWN token count (RRHF's reference code divides by the padded
              batch length instead: a known bug, not repeated here)
  scores      test-based scores from `ranking.score` (higher is better)
  is_teacher  True for teacher responses (rrtf only)

p_i = logp_sum_i / lengths_i ** length_penalty is the length-normalised log-prob.

rrtf  L_rank = sum over {teacher t, student s} pairs with r_t >= r_s of
               w_ts * max(0, p_s - p_t)             (= -(r_t - r_s) * min(0, p_t - p_s))
      with w_ts = r_t - r_s, or `tie_weight` when r_t == r_s (at an equal outcome the teacher
      ranks higher); pairs where the teacher scores below the student are dropped.
      L_ft   = -logp_sum of the best teacher response (summed token NLL, no length
               normalisation, as the paper writes it); none when the prompt has no teacher
               (or its best scores below `min_ft_score`).
rrhf  L_rank = sum over pairs with r_i < r_j of max(0, p_i - p_j)  (plain sum, no weights)
      L_ft   = mean token NLL of the highest-scoring response (a teacher one at a tie).
total = rank_weight * L_rank + sft_weight * L_ft, averaged over the B prompts (reduction="mean";
prompts with no pair / no SFT target count with 0) or summed (reduction="sum").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

LossKind = Literal["rrtf", "rrhf"]


@dataclass
class RankLossOutput:
    total: Tensor
    """rank_weight * rank + sft_weight * ft (scalar, differentiable)."""
    rank: Tensor
    """The ranking term, reduced over prompts."""
    ft: Tensor
    """The fine-tuning (SFT) term, reduced over prompts."""
    num_pairs: int
    """Ordered pairs that entered the ranking term (summed over prompts)."""
    num_ft: int
    """Prompts that had an SFT target."""


def length_normalised(logp_sum: Tensor, lengths: Tensor, length_penalty: float = 1.0) -> Tensor:
    """p = logp_sum / length ** length_penalty, each candidate by its own length (>= 1)."""
    return logp_sum / lengths.to(logp_sum.dtype).clamp(min=1.0) ** length_penalty


def _as_batch(*tensors: Tensor | None) -> list[Tensor | None]:
    return [t if t is None or t.dim() == 2 else t.unsqueeze(0) for t in tensors]


def _reduce(per_prompt: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_prompt.mean()
    if reduction == "sum":
        return per_prompt.sum()
    raise ValueError(f"reduction={reduction!r} must be 'mean' or 'sum'")


def rrtf_loss(
    logp_sum: Tensor,
    lengths: Tensor,
    scores: Tensor,
    is_teacher: Tensor,
    valid: Tensor | None = None,
    *,
    rank_weight: float = 1.0,
    sft_weight: float = 1.0,
    tie_weight: float = 0.5,
    length_penalty: float = 1.0,
    min_ft_score: float | None = None,
    reduction: str = "mean",
) -> RankLossOutput:
    """PanGu-Coder2's loss: gap-weighted teacher-over-student ranking + CE on the best teacher."""
    logp_sum, lengths, scores, is_teacher, valid = _as_batch(
        logp_sum, lengths, scores, is_teacher, valid)
    if valid is None:
        valid = torch.ones_like(is_teacher, dtype=torch.bool)
    teacher = valid & is_teacher.bool()                              # (B, K)
    student = valid & ~is_teacher.bool()                             # (B, K)
    p = length_normalised(logp_sum, lengths, length_penalty)         # (B, K)
    r = scores.to(p.dtype)

    gap = r.unsqueeze(2) - r.unsqueeze(1)                            # (B, K_tea, K_stu)
    pair = teacher.unsqueeze(2) & student.unsqueeze(1) & (gap >= 0)  # (B, K, K)
    if tie_weight <= 0:
        pair &= gap > 0
    weight = torch.where(gap > 0, gap, torch.full_like(gap, tie_weight))
    hinge = torch.relu(p.unsqueeze(1) - p.unsqueeze(2))              # max(0, p_stu - p_tea)
    rank_per_prompt = torch.where(pair, weight * hinge, torch.zeros_like(hinge)).sum((1, 2))

    masked = torch.where(teacher, r, torch.full_like(r, float("-inf")))
    best = masked.argmax(dim=1)                                      # first best teacher, (B,)
    has_ft = teacher.any(dim=1)
    if min_ft_score is not None:
        has_ft &= masked.max(dim=1).values >= min_ft_score
    best_logp = logp_sum.gather(1, best.unsqueeze(1)).squeeze(1)     # (B,)
    ft_per_prompt = torch.where(has_ft, -best_logp, torch.zeros_like(best_logp))

    rank = _reduce(rank_per_prompt, reduction)
    ft = _reduce(ft_per_prompt, reduction)
    return RankLossOutput(total=rank_weight * rank + sft_weight * ft, rank=rank, ft=ft,
                          num_pairs=int(pair.sum()), num_ft=int(has_ft.sum()))


def rrhf_loss(
    logp_sum: Tensor,
    lengths: Tensor,
    scores: Tensor,
    valid: Tensor | None = None,
    is_teacher: Tensor | None = None,
    *,
    rank_weight: float = 1.0,
    sft_weight: float = 1.0,
    length_penalty: float = 1.0,
    reduction: str = "mean",
) -> RankLossOutput:
    """RRHF: hinge over every pair with r_i < r_j + mean-token NLL of the best response.

    `is_teacher`, when given, only breaks ties when choosing the SFT target."""
    logp_sum, lengths, scores, valid, is_teacher = _as_batch(
        logp_sum, lengths, scores, valid, is_teacher)
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    p = length_normalised(logp_sum, lengths, length_penalty)         # (B, K)
    r = scores.to(p.dtype)

    worse_better = (r.unsqueeze(2) < r.unsqueeze(1)) & valid.unsqueeze(2) & valid.unsqueeze(1)
    hinge = torch.relu(p.unsqueeze(2) - p.unsqueeze(1))              # max(0, p_i - p_j), (B,K,K)
    rank_per_prompt = torch.where(worse_better, hinge, torch.zeros_like(hinge)).sum((1, 2))

    masked = torch.where(valid, r, torch.full_like(r, float("-inf")))
    is_max = valid & (masked == masked.max(dim=1, keepdim=True).values)
    key = is_max.to(torch.int64) * 2
    if is_teacher is not None:
        key = key + (is_max & is_teacher.bool()).to(torch.int64)
    best = key.argmax(dim=1)                                         # (B,)
    has_ft = valid.any(dim=1)
    mean_nll = -length_normalised(logp_sum, lengths, 1.0).gather(1, best.unsqueeze(1)).squeeze(1)
    ft_per_prompt = torch.where(has_ft, mean_nll, torch.zeros_like(mean_nll))

    rank = _reduce(rank_per_prompt, reduction)
    ft = _reduce(ft_per_prompt, reduction)
    return RankLossOutput(total=rank_weight * rank + sft_weight * ft, rank=rank, ft=ft,
                          num_pairs=int(worse_better.sum()), num_ft=int(has_ft.sum()))


def ranking_loss(
    kind: LossKind,
    logp_sum: Tensor,
    lengths: Tensor,
    scores: Tensor,
    is_teacher: Tensor,
    valid: Tensor | None = None,
    **kwargs: float | str | None,
) -> RankLossOutput:
    """Dispatch on `rrtf.loss` from the config; kwargs go to the chosen loss."""
    if kind == "rrtf":
        return rrtf_loss(logp_sum, lengths, scores, is_teacher, valid, **kwargs)
    if kind == "rrhf":
        kwargs.pop("tie_weight", None)
        kwargs.pop("min_ft_score", None)
        return rrhf_loss(logp_sum, lengths, scores, valid, is_teacher, **kwargs)
    raise ValueError(f"loss kind {kind!r} must be 'rrtf' or 'rrhf'")
