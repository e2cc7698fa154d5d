"""The pretraining forward step: per-token LM loss, masked, reported overall and per objective."""

from __future__ import annotations

from functools import partial

import torch

from megatron_rrtf.model.attention import prefix_lm_dense_mask
from megatron_rrtf.objectives.mixture import OBJECTIVE_NAMES

STAT_NAMES = ["loss"] + [f"loss/{name}" for name in OBJECTIVE_NAMES]


def attention_mask_for(prefix_len: torch.Tensor, seq_len: int, dense: bool) -> torch.Tensor | None:
    """None (plain causal) unless some sample has a bidirectional prefix.

    Our core attention takes per-sample prefix lengths and never builds an s x s mask on GPU;
    megatron's local attention needs the dense boolean mask (True = masked)."""
    if int(prefix_len.max()) <= 1:  # a prefix of one token is plain causal attention
        return None
    return prefix_lm_dense_mask(prefix_len, seq_len) if dense else prefix_len


def loss_func(loss_mask: torch.Tensor, objective_id: torch.Tensor, output: torch.Tensor):
    """Per-token losses [b, s] -> (loss sum, token count, {stat: [sum, count]})."""
    per_token = output.float() * loss_mask                                # [b, s]
    loss_sum = per_token.sum()
    num_tokens = loss_mask.sum().to(torch.int)
    row_sum = per_token.detach().sum(dim=1)                               # [b]
    row_count = loss_mask.sum(dim=1)                                      # [b]
    stats = {"loss": torch.stack([loss_sum.detach(), loss_mask.sum()]).double()}
    for i, name in enumerate(OBJECTIVE_NAMES):
        rows = objective_id == i
        if rows.any():
            stats[f"loss/{name}"] = torch.stack([row_sum[rows].sum(), row_count[rows].sum()]).double()
    return loss_sum, num_tokens, stats


def make_forward_step(dense_mask: bool):
    def forward_step(batch, model):
        tokens = batch["tokens"]                                          # [b, s]
        b, s = tokens.shape
        position_ids = torch.arange(s, device=tokens.device)[None].expand(b, -1)
        mask = attention_mask_for(batch["prefix_len"], s, dense_mask)
        output = model(tokens, position_ids, mask, labels=batch["labels"])
        return output, partial(loss_func, batch["loss_mask"], batch["objective_id"])

    return forward_step
