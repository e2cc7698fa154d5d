"""HumanEval through the sandbox: the bundled data, every canonical solution passes, wrong
solutions fail, pass@k is reported from the runs."""

from __future__ import annotations

import time

import pytest

from megatron_rrtf.errors import DataError
from megatron_rrtf.eval.humaneval import (
    NUM_PROBLEMS,
    build_program,
    evaluate_completions,
    load_problems,
    make_job,
)
from megatron_rrtf.sandbox import run_many

pytestmark = pytest.mark.xdist_group("sandbox")

# (task, text in the canonical solution, replacement): small edits that must break it
WRONG_EDITS = [
    ("HumanEval/2", "% 1.0", "% 2.0"),
    ("HumanEval/13", "return a", "return a + 1"),
    ("HumanEval/23", "len(string)", "len(string) + 1"),
    ("HumanEval/35", "e > m", "e < m"),
    ("HumanEval/55", "fib(n - 2)", "fib(n - 3) if n > 2 else 0"),
    ("HumanEval/60", "range(n + 1)", "range(n)"),
    ("HumanEval/100", "range(n)", "range(n - 1)"),
    ("HumanEval/0", "if idx != idx2:", "if abs(idx - idx2) > 1:"),
]


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def test_bundled_data_holds_164_problems(problems):
    assert len(problems) == NUM_PROBLEMS
    assert list(problems)[:2] == ["HumanEval/0", "HumanEval/1"]
    assert build_program(problems["HumanEval/0"], "X").endswith('"""\nX')


def test_every_canonical_solution_passes_in_parallel(problems):
    jobs = [make_job(p, p["canonical_solution"]) for p in problems.values()]
    start = time.monotonic()
    results = run_many(jobs, workers=2)
    elapsed = time.monotonic() - start
    failures = [(j.key, r.outcome, r.failed_test) for j, r in zip(jobs, results)
                if r.outcome != "passed"]
    assert failures == []
    assert all(r.tests_passed == r.tests_total > 0 for r in results)
    # ~10 s on a quiet 2-core machine; the bound only catches a collapse (e.g. programs waiting
    # out their wall clock), with room for a CI machine shared with heavy tests (load 40+)
    assert elapsed < 180, f"164 canonical solutions took {elapsed:.1f}s"


def test_empty_bodies_fail(problems):
    jobs = [make_job(p, "    pass\n") for p in list(problems.values())[::2]]
    passed = [j.key for j, r in zip(jobs, run_many(jobs, workers=2)) if r.outcome == "passed"]
    assert passed == []


def test_off_by_one_and_none_returning_solutions_fail(problems):
    completions = {}
    for task, old, new in WRONG_EDITS:
        canonical = problems[task]["canonical_solution"]
        assert old in canonical, task
        completions[task] = [canonical.replace(old, new, 1), "    return None\n",
                             canonical]
    report = evaluate_completions(completions, ks=(1, 2, 10), problems=problems, workers=2)
    for task, runs in report["tasks"].items():
        assert [r["outcome"] == "passed" for r in runs] == [False, False, True], (task, runs)
    assert report["pass@k"][1] == pytest.approx(1 / 3)
    assert report["pass@k"][2] == pytest.approx(1 - 1 / 3)  # 1 - C(2,2)/C(3,2)
    assert 10 not in report["pass@k"]  # only 3 samples per task
    assert report["samples_per_task"] == (3, 3)


def test_unknown_task_ids_are_refused(problems):
    with pytest.raises(DataError, match="unknown task ids"):
        evaluate_completions({"HumanEval/999": ["    return 1\n"]}, problems=problems)
