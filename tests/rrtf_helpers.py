"""Shared test helpers for the RRTF tests (not a test module)."""

import torch.nn.functional as F
from torch import nn


class TinyCausalLM(nn.Module):
    """Two pre-norm blocks, learned positions, SDPA with an explicit [R, 1, S, S] mask."""

    def __init__(self, vocab=50, dim=32, heads=4, layers=2, max_pos=128):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_pos, dim)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"ln1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim),
                           "proj": nn.Linear(dim, dim), "ln2": nn.LayerNorm(dim),
                           "mlp": nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(),
                                                nn.Linear(4 * dim, dim))})
            for _ in range(layers))
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens, position_ids, attention_mask):
        b, s = tokens.shape
        x = self.embed(tokens) + self.pos(position_ids)                  # (B, S, D)
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).chunk(3, dim=-1)
            q, k, v = (t.view(b, s, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=~attention_mask)
            x = x + blk["proj"](att.transpose(1, 2).reshape(b, s, -1))
            x = x + blk["mlp"](blk["ln2"](x))
        return self.head(x)                                              # (B, S, V)
