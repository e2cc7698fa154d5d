"""Scores order outcomes syntax < runtime < partial < pass; ties rank teachers first."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.ranking import (
    category,
    outcome_distribution,
    rank_responses,
    score,
    valid_rrtf_pairs,
)
from megatron_rrtf.sandbox import ExecutionResult


def Result(outcome, tests_passed=0, tests_total=4, error_type=None):  # noqa: N802
    if outcome == "failed" and error_type is None:
        error_type = "AssertionError"
    return ExecutionResult(outcome, tests_passed, tests_total, None, error_type, 0.0, "")


def test_scores_order_the_four_outcome_levels():
    syntax = score(Result("syntax_error"))
    runtime = score(Result("error")), score(Result("timeout"))
    partial = [score(Result("failed", k, 4)) for k in range(4)]
    passed = score(Result("passed", 4, 4))
    assert syntax < min(runtime) and max(runtime) < min(partial)
    assert partial == sorted(partial) and partial[0] == 2.0 and partial[3] == 2.75
    assert max(partial) < passed == 3.0


def test_a_crash_inside_a_test_case_is_a_runtime_error_not_partial():
    crashed = Result("failed", 3, 4, error_type="IndexError")
    assert category(crashed) == "runtime_error" and score(crashed) == 1.0
    assert category(Result("failed", 3, 4)) == "partial"
    assert category(Result("timeout")) == "runtime_error"
    assert category(Result("syntax_error")) == "compile_error"


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
    assert dist["student"]["passed"] == 1 and dist["student"]["runtime_error"] == 1
    assert dist["student"]["total"] == 2 and dist["human"]["total"] == 1


def test_unknown_source_names_the_fix():
    with pytest.raises(DataError, match="neither a teacher"):
        rank_responses([("x", "gpt4", Result("passed"))])


OUTCOME_STRATEGY = st.sampled_from([("syntax_error", None), ("error", "ValueError"),
                                    ("timeout", None), ("failed", "AssertionError"),
                                    ("failed", "IndexError"), ("passed", None)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(OUTCOME_STRATEGY, st.integers(0, 4), st.booleans()), min_size=1,
                max_size=8))
def test_ranking_is_by_score_then_teacher_first(cands):
    items = [(f"r{i}", "teacher:x" if t else "student",
              Result(o, min(p, 3) if o == "failed" else (4 if o == "passed" else 0), 4, e))
             for i, ((o, e), p, t) in enumerate(cands)]
    ranked = rank_responses(items)
    keys = [(-r.score, not r.is_teacher, r.index) for r in ranked]
    assert keys == sorted(keys)
    assert sorted(r.index for r in ranked) == list(range(len(items)))
    assert all(0.0 <= r.score <= 3.0 for r in ranked)
