"""`mrrtf humaneval` end to end: tiny random model directory -> samples -> sandbox -> JSON."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

from megatron_rrtf.eval.humaneval import load_problems
from mrrtf.cli import main

pytestmark = pytest.mark.xdist_group("sandbox")


def test_humaneval_verb_writes_pass_at_k_and_outcomes(tmp_path, capsys):
    problems = list(load_problems().values())[:3]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([p["prompt"] + p["canonical_solution"] for p in problems],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig(vocab_size=len(tokenizer), n_positions=512,
                                                   n_embd=32, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "he.json"
    code = main(["humaneval", "--model", str(tmp_path / "model"), "--out", str(out),
                 "--samples", "2", "--ks", "1,2,10", "--temperature", "1.0",
                 "--max-new-tokens", "8", "--limit", "3", "--workers", "2"])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["pass@k"]) == {"1", "2"}  # k=10 > n=2 is dropped
    assert list(report["tasks"]) == [p["task_id"] for p in problems]
    for runs in report["tasks"].values():
        assert len(runs) == 2
        assert all(r["outcome"] in ("failed", "error", "syntax_error", "timeout") for r in runs)
        assert all("completion" in r for r in runs)
    assert "pass@1 0.0000" in capsys.readouterr().out
