"""Who attends to whom in a micro-batch of packed samples: `DocumentAttention`.

A sample's tokens fall into segments, the runs of one document (`Sample.doc_ids`; with
data.document_attention=packed the whole row is one segment), each with a bidirectional prefix of
p tokens (prefix-LM; 0 otherwise). Query i attends to key j exactly when both are in the same
segment and j <= i, or both are in that segment's prefix. Position ids restart at 0 per segment.

Everything is derived once per micro-batch, on the host, before the layers run, from one
description, the segments (`cu_seqlens` over the flattened [b * s] tokens and their prefix
lengths):
  * `dense()`: the CPU mask, bool [b, 1, s, s], True = masked (megatron's convention), built
    from the segments and cached, so every layer reuses one tensor;
  * `varlen`: what flash-attn's variable-length kernel needs on GPU (cu_seqlens, max lengths,
    the gather indices of the two-call prefix-LM scheme), with no host sync inside a layer.
Both come from the same segments, so the CPU mask and the GPU kernels cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class VarlenCall:
    """One flash_attn_varlen_func call over gathered tokens of the flattened [b * s] batch."""

    q_index: torch.Tensor | None
    """int64 [nq]: query tokens (None: all tokens in order)."""
    k_index: torch.Tensor | None
    """int64 [nk]: key/value tokens (None: all tokens in order)."""
    cu_seqlens_q: torch.Tensor
    cu_seqlens_k: torch.Tensor
    max_seqlen_q: int
    max_seqlen_k: int
    causal: bool
    """Causal with bottom-right alignment (flash-attn's convention when seqlen_q < seqlen_k)."""


@dataclass
class DocumentAttention:
    """The attention layout of one micro-batch (see the module docstring)."""

    batch: int
    seq: int
    segment: torch.Tensor
    """int64 [b, s]: the segment (globally numbered) of each token."""
    in_prefix: torch.Tensor
    """bool [b, s]: the token is in its segment's bidirectional prefix."""
    position_ids: torch.Tensor
    """int64 [b, s]: the token's position within its segment."""
    cu_seqlens: torch.Tensor
    """int32 [n + 1]: segment boundaries over the flattened [b * s] tokens."""
    prefix_lens: torch.Tensor
    """int32 [n]: each segment's prefix length."""
    varlen: tuple[VarlenCall, ...]
    """The flash-attn calls that compute this attention (one without prefixes, else two)."""
    causal_only: bool
    """Every row is one segment without a prefix: plain causal attention, no mask needed."""
    _dense: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def build(cls, doc_ids: np.ndarray, prefix_mask: np.ndarray, separate: bool = True,
              device: torch.device | str = "cpu") -> DocumentAttention:
        """From a collated batch's doc_ids and prefix_mask [b, s] (numpy, host side).
        separate=False (data.document_attention=packed): each row is one segment."""
        doc_ids, prefix_mask = np.asarray(doc_ids), np.asarray(prefix_mask, dtype=bool)
        b, s = doc_ids.shape
        starts_here = np.ones((b, s), dtype=bool)
        if separate:
            starts_here[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
        else:
            starts_here[:, 1:] = False
        flat = starts_here.ravel()
        seg = np.cumsum(flat) - 1                                          # [b*s]
        starts = np.flatnonzero(flat)                                      # [n]
        lengths = np.diff(np.append(starts, b * s))                        # [n]
        pos = np.arange(b * s) - starts[seg]                               # [b*s]
        prefix_lens = np.bincount(seg, weights=prefix_mask.ravel(),
                                  minlength=len(starts)).astype(np.int64)  # [n]
        if not np.array_equal(pos < prefix_lens[seg], prefix_mask.ravel()):
            raise ValueError("a prefix-LM prefix must be the first tokens of its document")
        cu = np.concatenate(([0], np.cumsum(lengths)))

        def tensor(x, dtype):
            return torch.as_tensor(np.asarray(x), dtype=dtype).to(device)

        plan = _varlen_plan(starts, lengths, prefix_lens, tensor)
        return cls(batch=b, seq=s, segment=tensor(seg.reshape(b, s), torch.long),
                   in_prefix=tensor(prefix_mask, torch.bool),
                   position_ids=tensor(pos.reshape(b, s), torch.long),
                   cu_seqlens=tensor(cu, torch.int32), prefix_lens=tensor(prefix_lens,
                                                                          torch.int32),
                   varlen=plan,
                   causal_only=len(starts) == b and int(prefix_lens.max(initial=0)) <= 1)

    def dense(self) -> torch.Tensor:
        """bool [b, 1, s, s], True = masked: other segment, or a later key outside the prefix."""
        if self._dense is None:
            seg, pre = self.segment, self.in_prefix                       # [b, s]
            idx = torch.arange(self.seq, device=seg.device)
            later = idx[None, :] > idx[:, None]                            # [s(q), s(k)]
            other = seg[:, :, None] != seg[:, None, :]                     # [b, s, s]
            both_prefix = pre[:, :, None] & pre[:, None, :]                # [b, s, s]
            self._dense = (other | (later[None] & ~both_prefix))[:, None]  # [b, 1, s, s]
        return self._dense

    def model_mask(self, dense: bool = False) -> DocumentAttention | torch.Tensor | None:
        """GPTModel's attention_mask for this layout: None for plain causal (the kernels' fast
        path); else the layout itself (our core attention), or its dense mask when `dense`
        (megatron's local attention takes only that)."""
        if self.causal_only:
            return None
        return self.dense() if dense else self


def _varlen_plan(starts: np.ndarray, lengths: np.ndarray, prefix_lens: np.ndarray,
                 tensor) -> tuple[VarlenCall, ...]:
    """Causal varlen over the segments; with prefixes, two calls: prefix queries x prefix keys
    (not causal), then each segment's queries after its prefix x the segment's keys (causal,
    bottom-right)."""
    def cu(lens: np.ndarray):
        return tensor(np.concatenate(([0], np.cumsum(lens))), torch.int32)

    def gather(first: np.ndarray, last: np.ndarray):
        """Flat indices of tokens starts[j] + [first_j, last_j) for each segment j."""
        if len(first) == 0:
            return tensor(np.zeros(0, dtype=np.int64), torch.long)
        return tensor(np.concatenate([np.arange(a, b) for a, b in zip(first, last)]), torch.long)

    if int(prefix_lens.max(initial=0)) == 0:
        whole = cu(lengths)
        return (VarlenCall(None, None, whole, whole, int(lengths.max()), int(lengths.max()),
                           True),)
    calls = []
    pre = prefix_lens > 0
    if pre.any():
        q = gather(starts[pre], starts[pre] + prefix_lens[pre])
        lens = prefix_lens[pre]
        calls.append(VarlenCall(q, q, cu(lens), cu(lens), int(lens.max()), int(lens.max()),
                                False))
    suf = prefix_lens < lengths
    if suf.any():
        q_lens, k_lens = lengths[suf] - prefix_lens[suf], lengths[suf]
        calls.append(VarlenCall(gather(starts[suf] + prefix_lens[suf], starts[suf] + k_lens),
                                gather(starts[suf], starts[suf] + k_lens), cu(q_lens),
                                cu(k_lens), int(q_lens.max()), int(k_lens.max()), True))
    return tuple(calls)


def varlen_document_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              layout: DocumentAttention, attend, softmax_scale: float,
                              dropout_p: float = 0.0) -> torch.Tensor:
    """q [b, s, np, hn], k/v [b, s, ng, hn] -> [b, s, np, hn] through `attend` (flash-attn's
    flash_attn_varlen_func signature: the kernel on GPU, a reference on CPU in the tests)."""
    b, s = q.shape[:2]
    qf, kf, vf = (x.reshape(b * s, *x.shape[2:]) for x in (q, k, v))
    out = torch.empty_like(qf)
    for call in layout.varlen:
        qs = qf if call.q_index is None else qf.index_select(0, call.q_index)
        ks = kf if call.k_index is None else kf.index_select(0, call.k_index)
        vs = vf if call.k_index is None else vf.index_select(0, call.k_index)
        o = attend(qs, ks, vs, call.cu_seqlens_q, call.cu_seqlens_k, call.max_seqlen_q,
                   call.max_seqlen_k, dropout_p=dropout_p, softmax_scale=softmax_scale,
                   causal=call.causal)
        if call.q_index is None:
            out = o
        else:
            out.index_copy_(0, call.q_index, o)
    return out.reshape(b, s, *q.shape[2:])
