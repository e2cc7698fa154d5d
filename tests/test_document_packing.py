"""Document-aware packing end to end in the model: a packed sample of several documents gives each
document the logits it gets alone from position 0, in both families, MQA and GQA, causal and
prefix-LM, one process and TP=2 / PP=2; and training runs and resumes exactly with separate and
with packed document attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distributed import run_distributed

from megatron_rrtf.model.documents import DocumentAttention

pytestmark = pytest.mark.xdist_group("model")

LENGTHS = (7, 10, 7)          # three documents in one 24-token sample
PREFIXES = (3, 0, 5)          # prefix-LM: each document's own prefix (0: causal)


def packed_layout(prefixes):
    ids = np.repeat(np.arange(len(LENGTHS)), LENGTHS)[None].astype(np.int32)
    prefix = np.concatenate([np.arange(n) < p for n, p in zip(LENGTHS, prefixes)])[None]
    return DocumentAttention.build(ids, prefix)


def alone_layout(length, p):
    return DocumentAttention.build(np.zeros((1, length), dtype=np.int32),
                                   (np.arange(length) < p)[None])


def per_document_max_diff(forward, prefixes) -> float:
    """max |logits of each document in the packed sample - logits of it alone|; `forward`
    (tokens, layout) -> full-vocab logits [b, s, V]."""
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(3, 128, (1, sum(LENGTHS)), generator=g)
    packed = forward(tokens, packed_layout(prefixes))
    diff, start = 0.0, 0
    for n, p in zip(LENGTHS, prefixes):
        alone = forward(tokens[:, start:start + n], alone_layout(n, p))
        diff = max(diff, (packed[:, start:start + n] - alone).abs().max().item())
        start += n
    return diff


@pytest.mark.parametrize("family", ["starcoder", "rope"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("prefixes", [(0, 0, 0), PREFIXES], ids=["causal", "prefix_lm"])
def test_each_packed_document_gets_its_logits_alone(family, groups, prefixes, world_of_one):
    from parallel_workers import _config

    from megatron_rrtf.model.build import build_gpt_model

    model = build_gpt_model(_config(family, 1, 1, 2, groups), 256).eval()

    def forward(tokens, layout):
        with torch.no_grad():
            return model(tokens, layout.position_ids, layout.model_mask())

    assert per_document_max_diff(forward, prefixes) < 1e-5


def test_packed_documents_do_see_each_other_with_document_attention_packed(world_of_one):
    """The comparison setting is really different: the second document's logits depend on the
    first when documents are not kept apart."""
    from parallel_workers import _config

    from megatron_rrtf.model.build import build_gpt_model

    model = build_gpt_model(_config("rope", 1, 1, 2, 1), 256).eval()
    ids = np.repeat(np.arange(len(LENGTHS)), LENGTHS)[None].astype(np.int32)
    packed = DocumentAttention.build(ids, np.zeros_like(ids, dtype=bool), separate=False)
    assert packed.model_mask() is None and packed.position_ids[0, -1] == sum(LENGTHS) - 1

    def forward(tokens, layout):
        with torch.no_grad():
            return model(tokens, layout.position_ids, layout.model_mask())

    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(3, 128, (1, sum(LENGTHS)), generator=g)
    second = forward(tokens, packed)[:, LENGTHS[0]:LENGTHS[0] + LENGTHS[1]]
    alone = forward(tokens[:, LENGTHS[0]:LENGTHS[0] + LENGTHS[1]], alone_layout(LENGTHS[1], 0))
    assert (second - alone).abs().max().item() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("family, groups, tp, pp", [
    ("starcoder", 1, 2, 1), ("rope", 2, 2, 1), ("starcoder", 1, 1, 2), ("rope", 1, 1, 2)])
def test_each_packed_document_gets_its_logits_alone_under_tp_and_pp(family, groups, tp, pp):
    import parallel_workers

    results = run_distributed(parallel_workers.document_packing_under_model_parallel, 2,
                              family, groups, tp, pp)
    diffs = [d for r in results for d in r]
    assert diffs and max(diffs) < 1e-5, diffs
