"""megatron's fused QKV projection <-> separate q/k/v (MEGATRON_NOTES.md "Fused QKV layout").

`linear_qkv` has ng * (np/ng + 2) * hd rows, ordered per query group: the group's np/ng query
heads, then its K head, then its V head (biases likewise). Query head i belongs to group
i // (np/ng), exactly as in Hugging Face grouped-query attention, so q/k/v need no head
permutation beyond undoing this interleave.
"""

from __future__ import annotations

import torch


def split_qkv(fused: torch.Tensor, num_heads: int, num_groups: int, head_dim: int,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[ng*(np/ng+2)*hd, ...] -> q [np*hd, ...], k [ng*hd, ...], v [ng*hd, ...] (fresh tensors)."""
    per_group = num_heads // num_groups
    rest = fused.shape[1:]
    grouped = fused.reshape(num_groups, per_group + 2, head_dim, *rest)
    q = grouped[:, :per_group].reshape(num_heads * head_dim, *rest).clone()
    k = grouped[:, per_group].reshape(num_groups * head_dim, *rest).clone()
    v = grouped[:, per_group + 1].reshape(num_groups * head_dim, *rest).clone()
    return q, k, v


def merge_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
              num_groups: int, head_dim: int) -> torch.Tensor:
    """Inverse of split_qkv."""
    per_group = num_heads // num_groups
    rest = q.shape[1:]
    grouped = torch.cat([q.reshape(num_groups, per_group, head_dim, *rest),
                         k.reshape(num_groups, 1, head_dim, *rest),
                         v.reshape(num_groups, 1, head_dim, *rest)], dim=1)
    return grouped.reshape(num_groups * (per_group + 2) * head_dim, *rest)
