"""mrrtf eval (perplexity, HumanEval, infilling in both prompt formats) and mrrtf compare, on a
tiny trained checkpoint (hidden 64, seq 32, 4 steps) and on fake runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from pretrain_runs import pretrain_config, read_metrics

from megatron_rrtf.eval.infill_formats import (
    INFILL_KINDS,
    build_prompt,
    fit_to_budget,
    missing_tokens,
    pick_tasks,
    score_format,
)
from mrrtf.cli import main

pytestmark = [pytest.mark.xdist_group("eval_stage"), pytest.mark.usefixtures("one_torch_thread")]

MICRO, EVAL_BATCHES = 2, 2




@pytest.fixture(scope="module")
def trained_run(tiny_data_config, tmp_path_factory) -> Path:
    from pretrain.run import run_pretrain

    run_dir = tmp_path_factory.mktemp("eval_stage") / "run"
    run_pretrain(pretrain_config(tiny_data_config, run_dir, "train.train_steps=4",
                                 "train.eval_interval=4", f"train.eval_batches={EVAL_BATCHES}",
                                 f"train.micro_batch_size={MICRO}"))
    return run_dir


@pytest.fixture(scope="module")
def problems():
    from megatron_rrtf.eval.humaneval import load_problems

    return dict(list(load_problems().items())[:3])


def test_perplexity_equals_the_training_loops_heldout_loss_on_the_same_samples(trained_run):
    from megatron_rrtf.checkpoint.manager import resolve_step_dir
    from megatron_rrtf.config import load_config
    from megatron_rrtf.eval.perplexity import heldout_perplexity

    step_dir = resolve_step_dir(trained_run)
    logged = read_metrics(trained_run, "eval")[-1]
    ppl = heldout_perplexity(load_config(step_dir / "config.yaml"), step_dir,
                             max_samples=MICRO * EVAL_BATCHES)
    from test_process_groups import nothing_left

    assert nothing_left()  # its world of one is torn down again
    assert set(ppl) == {"code/python", "nl"}
    for domain, r in ppl.items():
        assert r["num_samples"] == MICRO * EVAL_BATCHES
        assert abs(r["loss"] - logged[f"eval/{domain}/loss"]) < 1e-4
        assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
        assert r["bits_per_byte"] == pytest.approx(
            r["loss"] * r["num_tokens"] / math.log(2) / r["num_bytes"])
        assert 0 < r["num_bytes"]


def test_eval_cli_writes_results_json_with_every_field(trained_run):
    code = main(["eval", str(trained_run), "--limit", "2", "--samples", "2", "--ks", "1,2",
                 "--max-new-tokens", "8", "--infill-tasks", "2", "--workers", "2",
                 "--temperature", "0.7", "--seed", "5", "--threads", "1",
                 "--infill-loss-tasks", "3"])
    assert code == 0
    results = json.loads((trained_run / "eval" / "results.json").read_text())
    assert {"checkpoint", "step_dir", "hf_dir", "step", "consumed_tokens", "config", "options",
            "started_at", "wall_time_s", "task_wall_time_s", "summary", "tasks"} <= set(results)
    assert results["step"] == 4 and results["config"]["model"]["hidden_size"] == 64
    assert Path(results["hf_dir"]) == (trained_run / "eval" / "hf_step_00000004").resolve()
    options = results["options"]
    assert (options["temperature"], options["top_p"], options["seed"],
            options["num_samples"], options["limit"]) == (0.7, 0.95, 5, 2, 2)
    assert set(results["task_wall_time_s"]) == {"perplexity", "humaneval", "infill",
                                                "infill_loss"}
    tasks = results["tasks"]
    assert {"loss", "perplexity", "bits_per_byte"} <= set(tasks["perplexity"]["nl"])
    assert set(tasks["humaneval"]["greedy"]["pass@k"]) == {"1"}
    assert set(tasks["humaneval"]["sampled"]["pass@k"]) == {"1", "2"}
    assert tasks["humaneval"]["num_problems"] == 2
    for fmt in ("span", "fim_psm", "fim_spm"):
        for kind in INFILL_KINDS:
            assert tasks["infill"][fmt][kind]["num_tasks"] == 2
            assert 0.0 <= tasks["infill"][fmt][kind]["pass@1"] <= 1.0
    assert "infill/fim_spm/random_span/pass@1" in results["summary"]
    infill_loss = tasks["infill_loss"]
    assert infill_loss["num_documents"] > 0 and infill_loss["num_tasks"]["random_span"] > 0
    for fmt in ("span", "fim_psm", "fim_spm"):
        for kind in INFILL_KINDS:  # seq 32: a middle of <= 8 tokens; some kinds may have none
            r = infill_loss[fmt][kind]
            assert r["num_tasks"] == infill_loss["num_tasks"][kind]
            if not r["num_tasks"]:
                continue
            assert 0 < r["loss"] < 20 and 0.0 <= r["exact_match"] <= 1.0
            assert r["bits_per_byte"] == pytest.approx(
                r["loss"] * r["num_tokens"] / math.log(2) / r["num_bytes"])
            assert f"infill_loss/{fmt}/{kind}/bpb" in results["summary"]
    assert results["summary"]["sandbox_harness_errors"] == 0


def _exported(run_dir: Path) -> Path:
    from megatron_rrtf.convert.export_cache import hf_model_dir

    return hf_model_dir(run_dir)


def test_eval_of_an_hf_dir_uses_our_step_dir_behind_it_or_skips_perplexity(trained_run,
                                                                           tmp_path):
    import shutil

    hf_dir = _exported(trained_run)
    ours = tmp_path / "ours.json"
    assert main(["eval", str(hf_dir), "--tasks", "perplexity", "--ppl-samples", "2",
                 "--out", str(ours)]) == 0
    assert json.loads(ours.read_text())["tasks"]["perplexity"]["nl"]["num_samples"] == 2
    foreign = tmp_path / "foreign"
    shutil.copytree(hf_dir, foreign)
    (foreign / "mrrtf_export.json").unlink()
    assert main(["eval", str(foreign), "--tasks", "perplexity,infill", "--limit", "1",
                 "--infill-tasks", "1", "--infill-formats", "span", "--max-new-tokens", "4",
                 "--threads", "1"]) == 0
    results = json.loads((foreign / "eval" / "results.json").read_text())
    assert results["step"] is None and results["config"] is None
    assert "skipped" in results["tasks"]["perplexity"]
    assert set(results["tasks"]["infill"]) == {"num_tasks", "span"}


def test_generation_batched_equals_one_prompt_at_a_time_on_our_export(trained_run):
    from megatron_rrtf.generation.generator import Generator, Sampling

    generator = Generator.load(_exported(trained_run))
    prompts = [generator.encode(t)
               for t in ("def f(x):\n    return", "import os\n", "class A:\n    def __init__(")]
    config = Sampling(max_new_tokens=6, batch_size=3)
    batched = generator.generate(prompts, config)
    single = [generator.generate([p], config)[0] for p in prompts]
    assert batched == single


def test_infill_prompts_have_the_training_layouts(tiny_tokenizer, problems):
    ids, encode = tiny_tokenizer.special_ids, tiny_tokenizer.encode
    task = pick_tasks(problems, "single_line", None)[0]
    pre, suf = encode(task.prefix), encode(task.suffix)
    span = build_prompt(task, "span", encode, ids)
    assert span.prompt_ids == [*pre, ids.masks[0], *suf, ids.eod, ids.sep, ids.masks[0]]
    assert span.stop_ids == (ids.eom,)
    psm = build_prompt(task, "fim_psm", encode, ids)
    assert psm.prompt_ids == [ids.fim_prefix, *pre, ids.fim_suffix, *suf, ids.fim_middle]
    spm = build_prompt(task, "fim_spm", encode, ids)
    assert spm.prompt_ids == [ids.fim_prefix, ids.fim_suffix, *suf, ids.fim_middle, *pre]
    assert psm.stop_ids == spm.stop_ids == (ids.eod,)
    cut = build_prompt(task, "fim_psm", encode, ids, budget=10)
    assert cut.prompt_ids == [ids.fim_prefix, *pre[-5:], ids.fim_suffix, *suf[:5], ids.fim_middle]


def test_fit_to_budget_keeps_the_tokens_next_to_the_hole():
    assert fit_to_budget([1, 2, 3], [4, 5], 10) == ([1, 2, 3], [4, 5])
    assert fit_to_budget(list(range(10)), [20, 21], 6) == ([6, 7, 8, 9], [20, 21])
    assert fit_to_budget([1, 2], list(range(20, 30)), 6) == ([1, 2], [20, 21, 22, 23])
    assert fit_to_budget(list(range(10)), list(range(20, 30)), 5) == ([7, 8, 9], [20, 21])


@pytest.mark.parametrize("fmt", ["span", "fim_psm", "fim_spm"])
def test_infill_scoring_gives_a_perfect_completer_100_and_a_wrong_one_0(tiny_tokenizer, problems,
                                                                       fmt):
    tasks_by_kind = {kind: pick_tasks(problems, kind, 3) for kind in INFILL_KINDS}
    truth = iter([t.middle for kind in INFILL_KINDS for t in tasks_by_kind[kind]])
    perfect = score_format(tasks_by_kind, fmt, lambda prompts: [next(truth) for _ in prompts],
                           tiny_tokenizer.encode, tiny_tokenizer.special_ids, workers=2)
    wrong = score_format(tasks_by_kind, fmt, lambda prompts: [" 1/0 (\n"] * len(prompts),
                         tiny_tokenizer.encode, tiny_tokenizer.special_ids, workers=2)
    for kind in INFILL_KINDS:
        assert perfect[kind]["num_tasks"] == 3
        assert perfect[kind]["pass@1"] == 1.0
        assert wrong[kind]["pass@1"] == 0.0
        assert perfect[kind]["harness_errors"] == wrong[kind]["harness_errors"] == 0


def test_a_format_the_tokenizer_cannot_express_names_the_missing_tokens(tiny_tokenizer):
    def no_sep(token: str):
        return None if token in ("<sep>", "<eom>") else tiny_tokenizer.token_to_id(token)

    assert missing_tokens("span", no_sep) == ["<sep>", "<eom>"]
    assert missing_tokens("fim_psm", no_sep) == []
    assert missing_tokens("span", tiny_tokenizer.token_to_id) == []


def _fake_run(root: Path, name: str, rates: dict, evaluated: bool) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"objectives": {"rates": rates}}))
    lines = []
    for step in range(1, 11):
        lines.append({"kind": "train", "step": step, "loss": 5 - step * 0.1,
                      "loss/causal": 5 - step * 0.1, "loss/span": 4.0 if rates.get("span") else None,
                      "consumed_tokens": step * 1024, "step_time_s": 0.5})
        if step % 5 == 0:
            lines.append({"kind": "eval", "step": step, "eval/code/python/loss": 6 - step * 0.1,
                          "eval/nl/loss": 7 - step * 0.1})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if evaluated:
        kinds = {k: {"pass@1": 0.25, "num_tasks": 4, "tasks": {}} for k in INFILL_KINDS}
        results = {"step": 10, "wall_time_s": 12.0,
                   "options": {"limit": 5, "max_new_tokens": 32, "seed": 0},
                   "tasks": {
                       "perplexity": {"code/python": {"loss": 5.0, "bits_per_byte": 2.5},
                                      "nl": {"loss": 6.0, "bits_per_byte": 3.25}},
                       "humaneval": {"num_problems": 5, "greedy": {"pass@k": {"1": 0.2}},
                                     "sampled": {"pass@k": {"1": 0.1, "10": 0.4},
                                                 "num_samples": 10, "temperature": 0.8,
                                                 "top_p": 0.95}},
                       "infill": {"num_tasks": {k: 4 for k in INFILL_KINDS}, "span": kinds,
                                  "fim_psm": kinds, "fim_spm": {"skipped": "lacks <fim_pad>"}},
                       "infill_loss": {"num_tasks": {k: 3 for k in INFILL_KINDS},
                                       "span": {k: {"bits_per_byte": 1.5, "num_tasks": 3,
                                                    "exact_match": 1 / 3}
                                                for k in INFILL_KINDS}}}}
        (run / "eval").mkdir()
        (run / "eval" / "results.json").write_text(json.dumps(results))
    return run


def test_compare_renders_a_report_of_two_runs_one_not_evaluated(tmp_path):
    a = _fake_run(tmp_path, "causal+span", {"causal": 0.5, "span": 0.5}, evaluated=True)
    b = _fake_run(tmp_path, "causal", {"causal": 1.0}, evaluated=False)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| causal+span | causal 0.50 + span 0.50 | 10 | 10240 |" in report
    assert "| causal+span | 5.000 | 2.500 | 6.000 | 3.250 |" in report
    assert "| causal+span | 5 | 0.200 | 0.100 | 0.400 |" in report
    assert "| causal+span | span | 0.250 | 0.250 | 0.250 |" in report
    assert "| causal+span | fim_spm | skipped: lacks <fim_pad> |" in report
    assert "| causal | not evaluated |" in report
    assert "| causal+span | span | 1.500 / 0.333 | 1.500 / 0.333 | 1.500 / 0.333 |" in report
    for png in ("heldout_loss", "final_train_loss", "bits_per_byte", "infill_pass1", "train_loss"):
        assert (tmp_path / "report" / f"{png}.png").stat().st_size > 1000
        assert f"({png}.png)" in report


def test_bad_paths_give_one_line_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty")]) == 2
    assert "Hugging Face model directory" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "empty"), "--tasks", "mbpp"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_compare_demo_reuses_results_of_the_latest_step_with_the_same_options(tmp_path,
                                                                              monkeypatch):
    import dataclasses

    from megatron_rrtf.eval import checkpoint_eval
    from mrrtf.commands import compare_demo

    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000001" / "model").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("step_00000001")
    options = dataclasses.replace(compare_demo.demo_eval_options(), limit=2, num_samples=2,
                                  max_new_tokens=8, infill_tasks=2)
    old = {"step_dir": str((run / "checkpoints" / "step_00000001").resolve()),
           "options": json.loads(json.dumps(dataclasses.asdict(options))), "summary": {}}
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text(json.dumps(old))
    calls = []
    monkeypatch.setattr(checkpoint_eval, "evaluate_checkpoint",
                        lambda path, opts: calls.append(opts) or {"summary": {"new": 1}})
    assert compare_demo.evaluate_run(run, options) == old
    assert calls == []
    changed = dataclasses.replace(options, max_new_tokens=9)
    assert compare_demo.evaluate_run(run, changed) == {"summary": {"new": 1}}
    assert calls == [changed]
