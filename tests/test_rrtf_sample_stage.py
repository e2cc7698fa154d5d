"""Sampling stage: K per source split over temperatures, JSONL teachers, a real tiny HF student."""

import json

from align.rank import read_responses
from align.sample import sample_all
from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records
from mrrtf.cli import main
from tests.rrtf_helpers import save_tiny_hf_model


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
    save_tiny_hf_model(tmp_path / "student")
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


def test_cli_evolve_with_a_local_hf_teacher_counts_what_it_rejects(tmp_path, capsys):
    save_tiny_hf_model(tmp_path / "teacher")
    train, _ = generate_demo_problems(2, 0, seed=0)
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps(d.to_json()) + "\n" for d in train))
    assert main(["rrtf", "evolve", "configs/rrtf/tiny_demo.yaml", "rrtf.evol_rounds=1",
                 "--seeds", str(tmp_path / "seeds.jsonl"), "--teacher-model",
                 str(tmp_path / "teacher"), "--max-new-tokens", "8",
                 "--out", str(tmp_path / "evolved.jsonl")]) == 0
    assert "evolution: 2 requests, kept 0" in capsys.readouterr().out   # random model: rejected
    assert len((tmp_path / "evolved.jsonl").read_text().splitlines()) == 2   # the seeds
