"""Ranked records -> packed/padded batch -> loss: same loss either way, gradients flow."""

import torch

from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.rrtf.batch import build_rrtf_batch, examples_from_ranked, rrtf_batch_loss
from megatron_rrtf.rrtf.problems import PromptTemplate
from tests.rrtf_helpers import TinyCausalLM

RECORDS = [
    {"instruction": "add", "responses": [
        {"code": "def f(a):\n    return a+1\n", "score": 3.0, "is_teacher": True},
        {"code": "def f(a):\n    return a\n", "score": 2.5, "is_teacher": False},
        {"code": "", "score": 0.0, "is_teacher": False}]},          # no code: left out
    {"instruction": "rev", "responses": [
        {"code": "x", "score": 1.0, "is_teacher": False}]},
]


def encode(text):
    return [1 + ord(c) % 40 for c in text]


def test_packed_and_padded_batches_give_the_same_loss_and_gradients_flow():
    examples = examples_from_ranked(RECORDS, PromptTemplate(text="{instruction}:"))
    assert [len(e.codes) for e in examples] == [2, 1]
    torch.manual_seed(0)
    model = TinyCausalLM().double()
    cfg = RRTFConfig(tie_weight=0.5)
    losses = []
    for pack in (True, False):
        batch = build_rrtf_batch(examples, encode, eos_id=0, pack=pack)
        c = batch.candidates
        out = rrtf_batch_loss(model(c.tokens, c.position_ids, c.attention_mask), batch, cfg)
        losses.append(out.total)
        assert out.num_pairs == 1 and out.num_ft == 1
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    losses[0].backward()
    assert model.embed.weight.grad.abs().sum() > 0


def test_rrhf_and_sft_only_configs_run():
    examples = examples_from_ranked(RECORDS, PromptTemplate(text="{instruction}:"))
    batch = build_rrtf_batch(examples, encode, eos_id=None, max_len=20)
    c = batch.candidates
    model = TinyCausalLM().double()
    logits = model(c.tokens, c.position_ids, c.attention_mask)
    rrhf = rrtf_batch_loss(logits, batch, RRTFConfig(loss="rrhf"))
    sft = rrtf_batch_loss(logits, batch, RRTFConfig(rank_weight=0.0))
    assert torch.isfinite(rrhf.total) and rrhf.num_ft == 2
    assert torch.allclose(sft.total, sft.ft)
