"""Core attention modules for megatron-core's `core_attention` slot, chosen by device at build time.

Both take megatron's layout (query [sq, b, np, hn], key/value [sk, b, ng, hn]) and return
[sq, b, np * hn]. `attention_mask` is one of
  * None                     -> causal;
  * bool [b|1, 1|np, sq, sk] -> dense mask, True = masked (megatron's convention; RRTF's
                                candidate packing);
  * DocumentAttention        -> packed documents and prefix-LM prefixes (model.documents): SDPA
                                takes its cached dense mask, flash-attn its variable-length
                                calls (never an s x s mask on GPU).
K/V keep their ng heads (ng = 1 for MQA): neither path materialises repeated K/V heads.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_rrtf.model.documents import DocumentAttention, varlen_document_attention

try:  # optional `gpu` extra
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    HAVE_FLASH_ATTN = True
except ImportError:  # pragma: no cover - CPU machines
    flash_attn_func = flash_attn_varlen_func = None
    HAVE_FLASH_ATTN = False


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
            if isinstance(attention_mask, DocumentAttention):
                attention_mask = attention_mask.dense()  # built once, shared by the layers
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=~attention_mask,
                                                 dropout_p=dropout, scale=self.softmax_scale,
                                                 enable_gqa=gqa)
        return out.permute(2, 0, 1, 3)                                     # [sq, b, np, hn]


def varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                               dropout_p=0.0, softmax_scale=None, causal=False):
    """flash_attn_varlen_func's semantics in plain PyTorch (bottom-right causal alignment).

    Used on CPU to prove the GPU path (`documents.varlen_document_attention`) against the dense
    mask."""
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
    """flash-attn 2 on CUDA: causal via flash_attn_func; packed documents and prefix-LM via the
    variable-length kernel over the segments (documents.varlen_document_attention).

    A dense boolean mask (used only by RRTF candidate packing) falls back to SDPA."""

    def _attend(self, query, key, value, attention_mask):
        dropout = self.dropout_p if self.training else 0.0
        if attention_mask is not None and not isinstance(attention_mask, DocumentAttention):
            return SDPAttention._attend(self, query, key, value, attention_mask)
        q, k, v = (x.transpose(0, 1).contiguous() for x in (query, key, value))  # [b, s, h, d]
        if attention_mask is None:
            out = flash_attn_func(q, k, v, dropout_p=dropout, softmax_scale=self.softmax_scale,
                                  causal=True)
        else:
            out = varlen_document_attention(q, k, v, attention_mask, flash_attn_varlen_func,
                                            self.softmax_scale, dropout)
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
