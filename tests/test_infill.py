"""Infilling tasks: exact reconstruction, deterministic construction, and scoring by execution."""

from __future__ import annotations

import pytest

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.eval.humaneval import load_problems
from megatron_rrtf.eval.infill import build_infill_tasks, evaluate_infills, random_span_tasks
from megatron_rrtf.sandbox import SandboxLimits

pytestmark = pytest.mark.xdist_group("sandbox")

KINDS = ("single_line", "multi_line", "random_span")


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.mark.parametrize("kind", KINDS)
def test_prefix_middle_suffix_reproduces_the_canonical_program(problems, kind):
    tasks = build_infill_tasks(problems, kind)
    for task in tasks:
        problem = problems[task.task_id.split("/", 1)[1].rsplit("/", 1)[0]]
        assert task.program(task.middle) == problem["prompt"] + problem["canonical_solution"]
        assert task.middle and task.prefix.startswith(problem["prompt"])
    assert len({t.task_id for t in tasks}) == len(tasks)


def test_task_counts_match_the_fim_benchmark(problems):
    counts = [len(build_infill_tasks(problems, k)) for k in KINDS]
    assert counts == [1033, 5815, 1640]


def test_single_line_middles_are_whole_non_blank_lines(problems):
    for task in build_infill_tasks(problems, "single_line")[:200]:
        assert task.middle.strip() and task.middle.count("\n") <= 1
        assert task.prefix.endswith("\n")


def test_random_spans_are_deterministic_per_seed(problems):
    problem = problems["HumanEval/10"]
    a, b = random_span_tasks(problem, 5, seed=1), random_span_tasks(problem, 5, seed=1)
    c = random_span_tasks(problem, 5, seed=2)
    assert [t.middle for t in a] == [t.middle for t in b]
    assert [t.middle for t in a] != [t.middle for t in c]


def test_unknown_kind_is_refused(problems):
    with pytest.raises(ConfigError, match="single_line"):
        build_infill_tasks(problems, "whole_file")


def test_scoring_runs_the_tests_on_the_filled_program(problems):
    tasks = build_infill_tasks(problems, "multi_line")[::300]  # 20 tasks over many problems
    middles = {t.task_id: [t.middle, ""] for t in tasks}
    limits = SandboxLimits(timeout_s=3.0, cpu_s=2.0)  # a removed `i += 1` may loop forever
    report = evaluate_infills(tasks, middles, ks=(1, 2), workers=2, limits=limits)
    canonical = [report["tasks"][t.task_id][0]["outcome"] for t in tasks]
    emptied = [report["tasks"][t.task_id][1]["outcome"] for t in tasks]
    assert canonical == ["passed"] * len(tasks)
    assert emptied.count("passed") <= len(tasks) // 4  # a removed span is rarely harmless
    assert report["pass@k"][1] == pytest.approx((len(tasks) + emptied.count("passed"))
                                                / (2 * len(tasks)))
    assert report["pass@k"][2] == pytest.approx(1.0)
