"""The pretraining forward step: per-token LM loss, masked, reported overall and per objective.
Positions and attention come from the micro-batch's DocumentAttention (pretrain.batches)."""

from __future__ import annotations

from functools import partial

import torch

from megatron_rrtf.objectives.mixture import OBJECTIVE_NAMES

STAT_NAMES = ["loss"] + [f"loss/{name}" for name in OBJECTIVE_NAMES]


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
        layout = batch["attention"]
        output = model(batch["tokens"], layout.position_ids,                # [b, s] each
                       layout.model_mask(dense_mask), labels=batch["labels"])
        return output, partial(loss_func, batch["loss_mask"], batch["objective_id"])

    return forward_step
