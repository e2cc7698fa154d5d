"""Core attention modules for megatron-core's `core_attention` slot, chosen by device at build time.

Both take megatron's layout (query [sq, b, np, hn], key/value [sk, b, ng, hn]) and return
[sq, b, np * hn]. `attention_mask` is one of
  * None                     -> causal;
  * bool [b|1, 1|np, sq, sk] -> dense mask, True = masked (megatron's convention);
  * int  [b]                 -> prefix-LM: per-sample prefix lengths; positions < prefix_len attend
                                bidirectionally among themselves, later positions causally.
K/V keep their ng heads (ng = 1 for MQA): neither path materialises repeated K/V heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

try:  # optional `gpu` extra
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    HAVE_FLASH_ATTN = True
except ImportError:  # pragma: no cover - CPU machines
    flash_attn_func = flash_attn_varlen_func = None
    HAVE_FLASH_ATTN = False


def prefix_lm_dense_mask(prefix_len: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[b] prefix lengths -> bool [b, 1, s, s], True = masked: key > query unless key < prefix."""
    pos = torch.arange(seq_len, device=prefix_len.device)
    future = pos[None, :] > pos[:, None]                                   # [s(q), s(k)]
    in_prefix = pos[None, None, :] < prefix_len[:, None, None]             # [b, 1, s(k)]
    return (future[None] & ~in_prefix)[:, None]                            # [b, 1, s, s]


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(1, 2, 0, 3)  # [s, b, h, d] -> [b, h, s, d]


class _CoreAttentionBase(MegatronModule):
    """What megatron passes to a core_attention module; subclasses implement `_attend`."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str = "self",
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection: Any = None,
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("context parallelism is not supported by megatron_rrtf attention")
        self.attn_mask_type = attn_mask_type
        self.head_dim = config.kv_channels
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(self.head_dim)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(self, query, key, value, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        if attention_bias is not None or packed_seq_params is not None:
            raise NotImplementedError("attention_bias / packed_seq_params are not supported")
        sq, b, np_, hn = query.shape
        context = self._attend(query, key, value, attention_mask)          # [sq, b, np, hn]
        return context.reshape(sq, b, np_ * hn)

    def _attend(self, query, key, value, attention_mask):  # pragma: no cover - abstract
        raise NotImplementedError


class SDPAttention(_CoreAttentionBase):
    """PyTorch scaled_dot_product_attention (fused kernels on CPU); exact for any mask."""

    def _attend(self, query, key, value, attention_mask):
        q, k, v = _heads_first(query), _heads_first(key), _heads_first(value)
        dropout = self.dropout_p if self.training else 0.0
        gqa = q.shape[1] != k.shape[1]
        if attention_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True,
                                                 scale=self.softmax_scale, enable_gqa=gqa)
        else:
            if attention_mask.dtype != torch.bool:  # prefix lengths
                attention_mask = prefix_lm_dense_mask(attention_mask, q.shape[2])
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=~attention_mask,
                                                 dropout_p=dropout, scale=self.softmax_scale,
                                                 enable_gqa=gqa)
        return out.permute(2, 0, 1, 3)                                     # [sq, b, np, hn]


VarlenAttend = Callable[..., torch.Tensor]


def prefix_lm_two_call_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix_len: torch.Tensor,
    attend: VarlenAttend, softmax_scale: float, dropout_p: float = 0.0,
) -> torch.Tensor:
    """Prefix-LM attention without an s x s mask: two variable-length attention calls.

    q [b, s, np, hn], k/v [b, s, ng, hn], prefix_len [b] -> [b, s, np, hn].
    Call 1: prefix queries x prefix keys, non-causal. Call 2: suffix queries x all keys, causal
    aligned bottom-right (query i of a suffix that starts at p sees keys <= p + i), which is
    flash-attn's causal convention when seqlen_q < seqlen_k. `attend` has flash_attn_varlen_func's
    signature, so the same code runs flash-attn on GPU and a reference on CPU.
    """
    b, s = q.shape[:2]
    lengths = prefix_len.to(torch.int64).clamp(0, s).tolist()
    out = torch.empty_like(q)

    def cu(seqlens: list[int]) -> torch.Tensor:
        c = torch.zeros(len(seqlens) + 1, dtype=torch.int32, device=q.device)
        c[1:] = torch.tensor(seqlens, device=q.device).cumsum(0)
        return c

    pre = [i for i in range(b) if lengths[i] > 0]
    if pre:
        pl = [lengths[i] for i in pre]
        qp = torch.cat([q[i, : lengths[i]] for i in pre])
        kp = torch.cat([k[i, : lengths[i]] for i in pre])
        vp = torch.cat([v[i, : lengths[i]] for i in pre])
        cu_p = cu(pl)
        o = attend(qp, kp, vp, cu_p, cu_p, max(pl), max(pl), dropout_p=dropout_p,
                   softmax_scale=softmax_scale, causal=False)
        for j, i in enumerate(pre):
            out[i, : lengths[i]] = o[cu_p[j]: cu_p[j + 1]]
    suf = [i for i in range(b) if lengths[i] < s]
    if suf:
        ql = [s - lengths[i] for i in suf]
        qs = torch.cat([q[i, lengths[i]:] for i in suf])
        ks = k[suf].reshape(len(suf) * s, *k.shape[2:])
        vs = v[suf].reshape(len(suf) * s, *v.shape[2:])
        cu_q, cu_k = cu(ql), cu([s] * len(suf))
        o = attend(qs, ks, vs, cu_q, cu_k, max(ql), s, dropout_p=dropout_p,
                   softmax_scale=softmax_scale, causal=True)
        for j, i in enumerate(suf):
            out[i, lengths[i]:] = o[cu_q[j]: cu_q[j + 1]]
    return out


def varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                               dropout_p=0.0, softmax_scale=None, causal=False):
    """flash_attn_varlen_func's semantics in plain PyTorch (bottom-right causal alignment).

    Used on CPU to prove `prefix_lm_two_call_attention` against the dense mask."""
    outs = []
    for j in range(len(cu_seqlens_q) - 1):
        qs = q[cu_seqlens_q[j]: cu_seqlens_q[j + 1]].transpose(0, 1)[None]  # [1, np, sq, hn]
        ks = k[cu_seqlens_k[j]: cu_seqlens_k[j + 1]].transpose(0, 1)[None]
        vs = v[cu_seqlens_k[j]: cu_seqlens_k[j + 1]].transpose(0, 1)[None]
        mask = None
        if causal:
            sq, sk = qs.shape[2], ks.shape[2]
            qi = torch.arange(sq, device=q.device)[:, None] + (sk - sq)
            mask = torch.arange(sk, device=q.device)[None, :] <= qi     # True = attend
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, dropout_p=dropout_p,
                                           scale=softmax_scale,
                                           enable_gqa=qs.shape[1] != ks.shape[1])
        outs.append(o[0].transpose(0, 1))
    return torch.cat(outs)


class FlashAttention(_CoreAttentionBase):
    """flash-attn 2 on CUDA: causal via flash_attn_func, prefix-LM via two varlen calls.

    A dense boolean mask (used only by RRTF candidate packing) falls back to SDPA."""

    def _attend(self, query, key, value, attention_mask):
        dropout = self.dropout_p if self.training else 0.0
        q, k, v = (x.transpose(0, 1) for x in (query, key, value))         # [b, s, h, d]
        if attention_mask is None:
            out = flash_attn_func(q, k, v, dropout_p=dropout, softmax_scale=self.softmax_scale,
                                  causal=True)
        elif attention_mask.dtype != torch.bool:
            out = prefix_lm_two_call_attention(q, k, v, attention_mask, flash_attn_varlen_func,
                                               self.softmax_scale, dropout)
        else:
            return SDPAttention._attend(self, query, key, value, attention_mask)
        return out.transpose(0, 1)                                         # [sq, b, np, hn]


def choose_core_attention(backend: str) -> type[MegatronModule] | None:
    """`auto` -> flash-attn on CUDA when installed, else SDPA; None means megatron's local one."""
    if backend == "local":
        return None
    if backend == "flash" or (backend == "auto" and torch.cuda.is_available() and HAVE_FLASH_ATTN):
        if not (torch.cuda.is_available() and HAVE_FLASH_ATTN):
            raise RuntimeError("model.attention_backend=flash needs CUDA and the flash-attn package "
                               "(pip install 'megatron-rrtf[gpu]'); use auto or sdpa")
        return FlashAttention
    return SDPAttention
