"""The comparison grid: its runs per axis (equal code tokens, equal tokens over 1 vs 4 passes),
and resumption (a rerun skips finished runs and evaluations), with fake train/eval steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.eval.grid import (
    DataFacts,
    GridJob,
    axis_settings,
    default_jobs,
    grid_specs,
    run_grid,
)

SOURCES = [{"name": "py", "domain": "code", "language": "python", "weight": 0.7, "dir": "c"},
           {"name": "prose", "domain": "nl", "weight": 0.3, "dir": "n"}]
FACTS = DataFacts(SOURCES, code_train_tokens=1_000_000, tokens_per_step=2048)


def sources_of(setting) -> list[dict]:
    (override,) = setting.overrides
    return json.loads(override.split("=", 1)[1])


def test_objectives_grid_has_every_mixture_over_every_seed_seed_major():
    specs = grid_specs(["objectives"], steps=100, seeds=3)
    assert [s.setting.name for s in specs[:5]] == ["causal", "causal+span", "causal+fim",
                                                   "causal+prefix_lm", "all4"]
    assert [s.seed for s in specs] == [0] * 5 + [1] * 5 + [2] * 5
    assert len({s.key for s in specs}) == 15


def test_data_axis_gives_both_settings_the_same_code_tokens():
    code, mixed = axis_settings("data", 400, FACTS)
    weights = {s["name"]: s["weight"] for s in sources_of(code)}
    assert weights == {"py": 0.7, "prose": 0.0}
    mixed_weights = {s["name"]: s["weight"] for s in sources_of(mixed)}
    code_tokens = [st.steps * weights_["py"] / sum(weights_.values())
                   for st, weights_ in ((code, weights), (mixed, mixed_weights))]
    assert mixed.steps > code.steps
    assert code_tokens[1] == pytest.approx(code_tokens[0], abs=1.0)  # one step of rounding


def test_epochs_axis_is_one_pass_vs_four_over_a_quarter_at_equal_steps():
    one, four = axis_settings("epochs", 122, FACTS)
    assert one.steps == four.steps == 122
    f1 = sources_of(one)[0]["train_fraction"]
    f4 = sources_of(four)[0]["train_fraction"]
    assert f1 == pytest.approx(122 * 2048 / 1_000_000) and f4 == pytest.approx(f1 / 4)
    assert [s["weight"] for s in sources_of(four)] == [0.7, 0.0]
    assert "~1.0 passes" in one.describe and "~4.0 passes" in four.describe


def test_axes_that_the_data_cannot_serve_are_refused_with_the_fix():
    only_code = DataFacts(SOURCES[:1], 1000, 10)
    with pytest.raises(ConfigError, match="needs an nl source"):
        axis_settings("data", 10, only_code)
    with pytest.raises(ConfigError, match="choose from"):
        axis_settings("sizes", 10, FACTS)
    with pytest.raises(ConfigError, match="--seeds >= 1"):
        grid_specs(["objectives"], 10, 0)


CALLS: list[str] = []


def fake_train(spec, run_dir: Path):
    CALLS.append(f"train {spec.key}")
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step in range(1, 4):
            f.write(json.dumps({"kind": "train", "step": step, "consumed_tokens": 10 * step,
                                "loss": 5.0 - step - spec.seed / 10}) + "\n")
    return {"status": "completed", "train_time_s": 1.0}


def fake_eval(spec, run_dir: Path):
    CALLS.append(f"eval {spec.key}")
    return {"summary": {"ppl/code/python/loss": 4.0 + spec.seed}, "wall_time_s": 0.5, "step": 3}


def broken_train(spec, run_dir: Path):
    if spec.setting.name == "causal+fim":
        raise RuntimeError("killed")
    return fake_train(spec, run_dir)


def jobs_for(out: Path, train=fake_train, eval_key="e1", seeds=2):
    return [GridJob(spec, out / "runs" / spec.key, train, fake_eval, f"t:{spec.key}", eval_key)
            for spec in grid_specs(["objectives"], 3, seeds)]


def test_a_rerun_skips_finished_runs_and_evaluations(tmp_path):
    CALLS.clear()
    records = run_grid(jobs_for(tmp_path), progress=False)
    assert len(CALLS) == 20 and not any(r["skipped"] for r in records)
    assert records[0]["curve"] == [[10, 4.0], [20, 3.0], [30, 2.0]]
    assert records[5]["eval"]["summary"] == {"ppl/code/python/loss": 5.0}
    CALLS.clear()
    again = run_grid(jobs_for(tmp_path), progress=False)
    assert CALLS == [] and all(r["skipped"] for r in again)
    assert [r["key"] for r in again] == [r["key"] for r in records]


def test_new_evaluation_options_re_evaluate_without_retraining(tmp_path):
    run_grid(jobs_for(tmp_path), progress=False)
    CALLS.clear()
    run_grid(jobs_for(tmp_path, eval_key="e2"), progress=False)
    assert CALLS and all(c.startswith("eval ") for c in CALLS) and len(CALLS) == 10


def test_a_grid_killed_midway_resumes_with_the_unfinished_runs_only(tmp_path):
    CALLS.clear()
    with pytest.raises(RuntimeError, match="killed"):
        run_grid(jobs_for(tmp_path, train=broken_train), progress=False)
    done_before = {c.split()[1] for c in CALLS if c.startswith("eval")}
    assert done_before == {"objectives/causal/seed0", "objectives/causal+span/seed0"}
    CALLS.clear()
    run_grid(jobs_for(tmp_path), progress=False)
    assert {c.split()[1] for c in CALLS}.isdisjoint(done_before)
    assert len([c for c in CALLS if c.startswith("train")]) == 8


def threads_seen(spec, run_dir: Path):
    """Records the worker's thread setting as its 'evaluation'."""
    import os

    return {"summary": {"threads": int(os.environ["OMP_NUM_THREADS"]), "pid": os.getpid()}}


def test_runs_go_to_worker_processes_when_jobs_allow(tmp_path):
    jobs = [GridJob(j.spec, j.run_dir, j.train_fn, threads_seen, j.train_key, "threads")
            for j in jobs_for(tmp_path, seeds=1)]
    records = run_grid(jobs, jobs=2, threads=3, progress=False)
    import os

    assert {r["eval"]["summary"]["threads"] for r in records} == {3}
    assert os.getpid() not in {r["eval"]["summary"]["pid"] for r in records}
    assert [r["setting"] for r in records] == ["causal", "causal+span", "causal+fim",
                                               "causal+prefix_lm", "all4"]
    assert all((tmp_path / "runs" / r["key"] / "record.json").is_file() for r in records)
    assert default_jobs(1, cpus=8) == 8 and default_jobs(3, cpus=8) == 2
    assert default_jobs(4, cpus=2) == 1


def test_seed_k_sets_model_init_and_data_order_and_the_setting_its_data(tmp_path):
    from megatron_rrtf.config.bundled import bundled_config
    from mrrtf.commands.compare_grid import BASE_SEED, PRESETS, GridTrainer

    trainer = GridTrainer((str(bundled_config("tiny.yaml")),
                           str(bundled_config("data/builtin.yaml"))),
                          ("data.tokenizer=tok.model", *PRESETS["small"]))
    config = trainer.config(grid_specs(["objectives"], 50, 3)[11], tmp_path)  # causal+span k=2
    assert config.train.seed == config.data.seed == BASE_SEED + 2
    assert config.objectives.probabilities()[:2] == (0.5, 0.5)
    assert config.model.hidden_size == 256 and config.train.train_steps == 50
    builtin = DataFacts([{"name": "stdlib_python", "domain": "code", "weight": 0.7, "dir": "c"},
                         {"name": "english_prose", "domain": "nl", "weight": 0.3, "dir": "n"}],
                        10_000, 2048)
    code, mixed = (trainer.config(spec, tmp_path) for spec in grid_specs(["data"], 50, 1, builtin))
    assert [s.weight for s in code.data.sources] == [0.7, 0.0]
    assert [s.weight for s in mixed.data.sources] == [0.7, 0.3]
    assert mixed.train.train_steps == round(50 / 0.7)
