"""`mrrtf eval --tasks humaneval` on a foreign HF model directory, end to end: tiny random model
-> prompts fitted to its context -> samples -> sandbox -> results JSON. (`mrrtf humaneval` was
this path's second copy; it is gone.)"""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

from megatron_rrtf.eval.humaneval import load_problems
from mrrtf.cli import main

pytestmark = pytest.mark.xdist_group("sandbox")


def test_eval_humaneval_on_an_hf_dir_writes_pass_at_k_and_outcomes(tmp_path, capsys):
    problems = list(load_problems().values())[:3]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([p["prompt"] + p["canonical_solution"] for p in problems],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    # 128 positions: HumanEval prompts run to ~400 tokens here, so most lose their start
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig(vocab_size=len(tokenizer), n_positions=128,
                                                   n_embd=32, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "he.json"
    code = main(["eval", str(tmp_path / "model"), "--tasks", "humaneval", "--out", str(out),
                 "--samples", "2", "--ks", "1,2,10", "--temperature", "1.0",
                 "--max-new-tokens", "8", "--limit", "3", "--workers", "2", "--threads", "1"])
    assert code == 0
    results = json.loads(out.read_text())
    he = results["tasks"]["humaneval"]
    assert he["num_problems"] == 3
    prompt_lengths = [len(tokenizer.encode(p["prompt"])) for p in problems]
    assert he["prompts_truncated"] == sum(n > 128 - 8 for n in prompt_lengths) > 0
    assert set(he["sampled"]["pass@k"]) == {"1", "2"}  # k=10 > n=2 is dropped
    assert list(he["sampled"]["outcomes"]) == [p["task_id"] for p in problems]
    for outcomes in he["sampled"]["outcomes"].values():
        assert len(outcomes) == 2
        assert all(o in ("failed", "error", "syntax_error", "timeout") for o in outcomes)
    assert list(he["greedy"]["completions"]) == [p["task_id"] for p in problems]
    assert results["summary"]["humaneval/greedy/pass@1"] == 0.0
    assert results["options"]["device"] == "auto" and results["step"] is None
    assert '"humaneval/sampled/pass@2": 0.0' in capsys.readouterr().out
