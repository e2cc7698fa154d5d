"""DocumentAttention (model/documents.py): the CPU mask, the GPU variable-length calls and the
position ids all describe the attention rule of packed documents with prefix-LM prefixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.model.attention import varlen_attention_reference
from megatron_rrtf.model.documents import DocumentAttention, varlen_document_attention
from megatron_rrtf.objectives.prefix_lm import prefix_lm_attention_mask


@st.composite
def layouts(draw, max_batch=3, max_seq=24):
    """(doc_ids, prefix_mask) [b, s]: rows of documents of 1..s tokens, each with a prefix of
    0..its length (the first tokens of the document)."""
    b, s = draw(st.integers(1, max_batch)), draw(st.integers(1, max_seq))
    doc_ids = np.zeros((b, s), dtype=np.int32)
    prefix = np.zeros((b, s), dtype=bool)
    for r in range(b):
        t, d = 0, 0
        while t < s:
            n = draw(st.integers(1, s - t))
            p = draw(st.integers(0, n))
            doc_ids[r, t:t + n], prefix[r, t:t + p] = d, True
            t, d = t + n, d + 1
    return doc_ids, prefix


def rule(doc_ids: np.ndarray, prefix: np.ndarray, separate: bool) -> np.ndarray:
    """bool [b, s, s], True where query i may attend to key j, straight from the definition."""
    ids = doc_ids if separate else np.zeros_like(doc_ids)
    return np.stack([prefix_lm_attention_mask(i, p) for i, p in zip(ids, prefix)])


def from_varlen(layout: DocumentAttention) -> np.ndarray:
    """bool [b, s, s]: the pairs the variable-length calls let attend (the GPU's view)."""
    b, s = layout.batch, layout.seq
    allowed = np.zeros((b * s, b * s), dtype=bool)
    for call in layout.varlen:
        q_index = np.arange(b * s) if call.q_index is None else call.q_index.numpy()
        k_index = np.arange(b * s) if call.k_index is None else call.k_index.numpy()
        cq, ck = call.cu_seqlens_q.tolist(), call.cu_seqlens_k.tolist()
        for j in range(len(cq) - 1):
            qs, ks = q_index[cq[j]:cq[j + 1]], k_index[ck[j]:ck[j + 1]]
            assert len(qs) <= call.max_seqlen_q and len(ks) <= call.max_seqlen_k
            for a, q in enumerate(qs):
                visible = ks[: a + len(ks) - len(qs) + 1] if call.causal else ks  # bottom-right
                allowed[q, visible] = True
    rows = [allowed[r * s:(r + 1) * s, r * s:(r + 1) * s] for r in range(b)]
    assert allowed.sum() == sum(x.sum() for x in rows)  # nothing crosses a batch row
    return np.stack(rows)


@settings(max_examples=300, deadline=None)
@given(layouts(), st.booleans())
def test_cpu_mask_and_gpu_calls_describe_the_same_attention(layout, separate):
    doc_ids, prefix = layout
    if not separate:  # packed: one prefix per row, at the row's start
        prefix = np.arange(prefix.shape[1])[None] < prefix.sum(axis=1, keepdims=True)
    built = DocumentAttention.build(doc_ids, prefix, separate)
    expected = rule(doc_ids, prefix, separate)
    assert (~built.dense()[:, 0].numpy() == expected).all()
    assert (from_varlen(built) == expected).all()
    ids = doc_ids if separate else np.zeros_like(doc_ids)
    for r in range(doc_ids.shape[0]):   # positions restart at 0 with every document
        starts = np.flatnonzero(np.diff(ids[r], prepend=-1))
        want = np.arange(ids.shape[1]) - starts[np.searchsorted(starts, np.arange(ids.shape[1]),
                                                                side="right") - 1]
        assert built.position_ids[r].tolist() == want.tolist()
    single = (np.diff(ids, axis=1) == 0).all() and prefix.sum(axis=1).max(initial=0) <= 1
    assert built.causal_only == bool(single)
    assert (built.model_mask() is None) == built.causal_only


@settings(max_examples=40, deadline=None)
@given(layouts(max_batch=3, max_seq=16), st.sampled_from([(4, 1), (4, 2), (4, 4)]),
       st.integers(0, 1000))
def test_gpu_path_equals_sdpa_with_the_cpu_mask(layout, heads, seed):
    """The flash-attn path (varlen calls), run with a CPU reference of flash_attn_varlen_func,
    gives the numbers SDPA gives with the dense mask; MQA, GQA and MHA."""
    doc_ids, prefix = layout
    built = DocumentAttention.build(doc_ids, prefix)
    (b, s), (h, g), d = doc_ids.shape, heads, 8
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, s, h, d, generator=gen)
    k, v = torch.randn(b, s, g, d, generator=gen), torch.randn(b, s, g, d, generator=gen)
    varlen = varlen_document_attention(q, k, v, built, varlen_attention_reference, d ** -0.5)
    dense = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=~built.dense(),
        scale=d ** -0.5, enable_gqa=h != g).transpose(1, 2)
    torch.testing.assert_close(varlen, dense, atol=1e-6, rtol=1e-5)


def test_the_dense_mask_is_built_once_per_micro_batch():
    built = DocumentAttention.build(np.array([[0, 0, 1, 1]]), np.zeros((1, 4), dtype=bool))
    assert built.dense() is built.dense()


def test_a_prefix_that_does_not_start_its_document_is_refused():
    with pytest.raises(ValueError, match="first tokens of its document"):
        DocumentAttention.build(np.array([[0, 0, 1, 1]]), np.array([[True, False, False, True]]))
