"""Sampling stage: K per source split over temperatures, JSONL teachers, a real tiny HF student."""

import json

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from align.rank import read_responses
from align.sample import sample_all
from megatron_rrtf.cli import main
from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records


def test_samples_split_over_temperatures_and_jsonl_teacher_capped(tmp_path):
    train, _ = generate_demo_problems(3, 0, seed=0)
    problems = [d.problem for d in train]
    teacher_file = tmp_path / "teacher.jsonl"
    teacher_file.write_text("".join(json.dumps(r) + "\n"
                                    for r in teacher_records(train, per_problem=3)))
    cfg = RRTFConfig(student=SamplingConfig(samples=4, temperatures=[0.2, 1.0]),
                     teachers=[TeacherConfig(name="t", kind="jsonl", path=str(teacher_file),
                                             samples=2)])
    calls = []

    def fake_generate(prompts, temperature, n, seed):
        calls.append((len(prompts), temperature, n))
        assert all(p.endswith("### Response:\n") and '"""' in p for p in prompts)
        return [[f"code@{temperature}#{i}" for i in range(n)] for _ in prompts]

    records = sample_all(problems, cfg, fake_generate)
    assert calls == [(3, 0.2, 2), (3, 1.0, 2)]
    student = [r for r in records if r["source"] == "student"]
    teacher = [r for r in records if r["source"] == "teacher:t"]
    assert len(student) == 12 and len(teacher) == 6
    assert {r["temperature"] for r in student} == {0.2, 1.0}


def test_cli_sample_with_a_tiny_hf_student(tmp_path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 20, trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                     pad_token="<pad>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512))
    model.save_pretrained(tmp_path / "student")
    hf_tok.save_pretrained(tmp_path / "student")
    train, _ = generate_demo_problems(2, 0, seed=0)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(d.to_json()) + "\n" for d in train))
    out = tmp_path / "responses.jsonl"
    assert main(["rrtf", "sample", "configs/rrtf/tiny_demo.yaml", "rrtf.teachers=[]",
                 "rrtf.student.samples=2", "rrtf.student.max_new_tokens=6",
                 "--problems", str(tmp_path / "p.jsonl"), "--student", str(tmp_path / "student"),
                 "--out", str(out)]) == 0
    responses = read_responses([out])
    assert sorted(responses) == sorted(d.problem.id for d in train)
    assert all(len(v) == 2 and all(r.source == "student" for r in v)
               for v in responses.values())
