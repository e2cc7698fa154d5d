"""Scores order outcomes syntax < runtime < partial < pass; ties rank teachers first."""

from dataclasses import dataclass

import pytest

from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.ranking import (
    outcome_distribution,
    rank_responses,
    score,
    valid_rrtf_pairs,
)


@dataclass(frozen=True)
class Result:  # the fields of megatron_rrtf.eval.sandbox.ExecutionResult that ranking reads
    outcome: str
    tests_passed: int = 0
    tests_total: int = 4
    failed_test: str | None = None
    error_type: str | None = None
    duration_s: float = 0.0
    output: str = ""


def test_scores_order_the_four_outcome_levels():
    syntax = score(Result("syntax_error"))
    runtime = score(Result("error")), score(Result("timeout"))
    partial = [score(Result("failed", k, 4)) for k in range(4)]
    passed = score(Result("passed", 4, 4))
    assert syntax < min(runtime) and max(runtime) < min(partial)
    assert partial == sorted(partial) and partial[0] == 2.0 and partial[3] == 2.75
    assert max(partial) < passed == 3.0


def test_failed_with_every_test_counted_as_passed_stays_below_pass():
    assert score(Result("failed", 4, 4)) < score(Result("passed", 4, 4))
    assert score(Result("failed", 0, 0)) == 2.0


def test_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="unknown execution outcome"):
        score(Result("crashed"))


def test_rank_responses_orders_by_score_then_teacher_then_input_order():
    ranked = rank_responses([
        ("s1", "student", Result("passed", 4, 4)),
        ("t1", "teacher:gpt", Result("error")),
        ("t2", "teacher:gpt", Result("passed", 4, 4)),
        ("s2", "student", Result("failed", 2, 4)),
        ("s3", "student", Result("syntax_error")),
    ])
    assert [r.text for r in ranked] == ["t2", "s1", "s2", "t1", "s3"]
    assert [r.rank for r in ranked] == [0, 1, 2, 3, 4]
    assert ranked[0].is_teacher and not ranked[1].is_teacher
    # the rrtf loss keeps teacher >= student pairs only: t2 over every student, t1 over s3
    pairs = {(ranked[i].text, ranked[j].text) for i, j in valid_rrtf_pairs(ranked)}
    assert pairs == {("t2", "s1"), ("t2", "s2"), ("t2", "s3"), ("t1", "s3")}


def test_outcome_distribution_counts_per_source():
    ranked = rank_responses([
        ("a", "student", Result("passed", 4, 4)),
        ("b", "student", Result("timeout")),
        ("c", "human", Result("passed", 4, 4)),
    ])
    dist = outcome_distribution(ranked)
    assert dist["student"]["passed"] == 1 and dist["student"]["timeout"] == 1
    assert dist["student"]["total"] == 2 and dist["human"]["total"] == 1


def test_unknown_source_names_the_fix():
    with pytest.raises(DataError, match="neither a teacher"):
        rank_responses([("x", "gpt4", Result("passed"))])
