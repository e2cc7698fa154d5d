"""RRTF rounds and the before/after evaluation table (resumable sampling:
test_align_sample_shards.py)."""

from __future__ import annotations

import json

import pytest

from align.evaluate import HeldoutEval, comparison_markdown, heldout_metrics, write_comparison
from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records


def _problems_and_teacher(tmp_path, n=7):
    train, held = generate_demo_problems(n, 3, seed=0)
    teacher = tmp_path / "teacher.jsonl"
    teacher.write_text("".join(json.dumps(r) + "\n" for r in teacher_records(train, 2)))
    cfg = RRTFConfig(student=SamplingConfig(samples=4, temperatures=[0.2, 1.0]),
                     teachers=[TeacherConfig(name="t", kind="jsonl", path=str(teacher),
                                             samples=1)])
    return train, held, cfg


def test_comparison_table_has_before_after_and_delta(tmp_path):
    table = write_comparison(tmp_path / "eval", {
        "before": {"heldout/pass@1 (greedy)": 0.1, "heldout/pass@5 (T=0.8, n=5)": 0.2},
        "after RRTF": {"heldout/pass@1 (greedy)": 0.4, "heldout/pass@5 (T=0.8, n=5)": 0.5}})
    row = table["metrics"]["heldout/pass@1 (greedy)"]["after RRTF"]
    assert row["before"] == 0.1 and row["after"] == 0.4 and row["delta"] == pytest.approx(0.3)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["metrics"]["heldout/pass@5 (T=0.8, n=5)"]["after RRTF"]["delta"] == \
        pytest.approx(0.3)
    md = (tmp_path / "eval.md").read_text()
    assert md == comparison_markdown(table)
    assert "| heldout/pass@1 (greedy) | 10.0 | 40.0 | +30.0 |" in md


def test_heldout_metrics_run_extracted_code_in_the_sandbox(tmp_path):
    _, held, cfg = _problems_and_teacher(tmp_path)
    problems = [d.problem for d in held]
    solutions = {d.problem.instruction: d.solution for d in held}
    good = next(iter(solutions))  # only the first problem is ever answered correctly

    def generate(prompts, temperature, n, seed):
        out = []
        for p in prompts:
            right = good in p
            out.append([f"```python\n{solutions[good]}```" if right and (temperature == 0 or i < 2)
                        else "def nope(:\n" for i in range(n)])
        return out

    m = heldout_metrics(problems, generate, cfg, HeldoutEval(seed=0, samples=4, ks=(1, 2, 8)))
    assert m["heldout/pass@1 (greedy)"] == pytest.approx(1 / 3)
    assert m["heldout/pass@1 (T=0.8, n=4)"] == pytest.approx(0.5 / 3)
    assert m["heldout/pass@2 (T=0.8, n=4)"] == pytest.approx((1 - 1 / 6) / 3)
    assert "heldout/pass@8 (T=0.8, n=4)" not in m  # k > n is not reported


@pytest.mark.slow
@pytest.mark.xdist_group("align")
def test_one_round_writes_samples_ranks_checkpoint_and_resumes(tiny_data_config, tmp_path):
    from align.rounds import run_rounds
    from align.sample import model_sampler
    from align.train import run_rrtf_train
    from megatron_rrtf.config import load_config
    from tests.test_align_train import _ranked_set

    ranked0 = _ranked_set(tmp_path)  # train.jsonl, teacher.jsonl, ranked.jsonl of 12 problems

    def config(run, *extra):
        return load_config(["configs/rrtf/tiny_demo.yaml"], [
            f"data.tokenizer={tiny_data_config.data.tokenizer}", "model.hidden_size=64",
            "model.seq_length=256", "train.micro_batch_size=2", "train.global_batch_size=4",
            "train.warmup_steps=1", f"logging.run_dir={tmp_path / run}",
            "logging.wandb_mode=disabled", "logging.progress_bar=false",
            "rrtf.student={samples: 2, temperatures: [0.8], max_new_tokens: 12}",
            f"rrtf.teachers=[{{name: demo, kind: jsonl, path: '{tmp_path / 'teacher.jsonl'}', "
            "samples: 1}]", *extra])

    run_rrtf_train(config("init", "train.train_steps=1"), ranked0)  # a model to align
    cfg = config("rounds", "train.train_steps=2", "rrtf.rounds=1",
                 f"checkpoint.init_from={tmp_path / 'init'}")
    exports = []

    def factory(hf_dir):
        exports.append(hf_dir)
        return model_sampler(hf_dir, cfg.rrtf.student, cfg.rrtf)

    summary = run_rounds(cfg, tmp_path / "train.jsonl", student_factory=factory, sample_chunk=5)
    rd = tmp_path / "rounds" / "round_1"
    # the student is init's export in the one export cache, beside init's checkpoints
    assert exports == [tmp_path / "init" / "eval" / "hf_step_00000001"]
    assert (exports[0] / "config.json").is_file()
    records = [json.loads(line) for line in (rd / "responses.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "student" for r in records) == 12 * 2
    assert sum(r["source"] == "teacher:demo" for r in records) == 12
    ranked = [json.loads(line) for line in (rd / "ranked.jsonl").read_text().splitlines()]
    assert len(ranked) == 12 and all(len(r["responses"]) == 3 for r in ranked)
    assert summary["rounds"][0]["train"]["status"] == "completed"
    assert (rd / "checkpoints" / "latest").is_file()
    assert summary["final"] == str(rd)
    assert json.loads((tmp_path / "rounds" / "rounds.json").read_text())["rounds"][0]["round"] == 1

    # Re-run: nothing is redone.
    stamps = {p: p.stat().st_mtime_ns for p in (rd / "responses.jsonl", rd / "ranked.jsonl",
                                                rd / "summary.json")}
    again = run_rounds(cfg, tmp_path / "train.jsonl", student_factory=factory)
    assert len(exports) == 1 and again["rounds"][0]["train"]["step"] == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # Training lost (e.g. killed before its first checkpoint): only training is redone, from the
    # ranked file already on disk.
    import shutil

    shutil.rmtree(rd / "checkpoints")
    (rd / "summary.json").unlink()
    third = run_rounds(cfg, tmp_path / "train.jsonl", student_factory=factory)
    assert len(exports) == 1 and third["rounds"][0]["train"]["status"] == "completed"
    assert (rd / "ranked.jsonl").stat().st_mtime_ns == stamps[rd / "ranked.jsonl"]
