"""Evol-Instruct evolution: requests, teacher as function or JSONL, filters and dedup."""

import json

import numpy as np
import pytest

from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.evolve import (
    EVOL_METHODS,
    NearDupIndex,
    evolution_requests,
    evolve,
    load_teacher_outputs,
    parse_teacher_output,
)
from megatron_rrtf.rrtf.problems import Problem

SEEDS = [Problem("s1", "Write add(a, b) returning the sum of a and b.", "assert add(1, 2) == 3",
                 "add"),
         Problem("s2", "Write rev(s) returning s reversed.", "assert rev('ab') == 'ba'", "rev")]


def reply(instruction, tests):
    return f"### Problem\n{instruction}\n### Tests\n```python\n{tests}\n```"


def test_requests_use_one_template_with_a_method_slot_and_keep_entry_point():
    reqs = evolution_requests(SEEDS, np.random.default_rng(0))
    assert [r.parent_id for r in reqs] == ["s1", "s2"]
    for r in reqs:
        assert r.method in EVOL_METHODS and EVOL_METHODS[r.method][0] in r.prompt
        assert r.id == f"{r.parent_id}-r1-{r.method}"
    assert "Keep the function name add." in reqs[0].prompt
    # complexity is down-weighted, not absent
    many = evolution_requests(SEEDS * 400, np.random.default_rng(1))
    share = sum(r.method == "complexity" for r in many) / len(many)
    assert 0.02 < share < 0.1


def test_parse_teacher_output_splits_problem_and_tests():
    ins, tests = parse_teacher_output(reply("Write add(a, b) for ints only.", "assert add(1, 1) == 2"))
    assert ins == "Write add(a, b) for ints only." and tests == "assert add(1, 1) == 2\n"
    assert parse_teacher_output("just a problem") == ("just a problem", "")


def test_evolve_with_a_function_teacher_filters_and_dedups():
    outputs = {
        "add": reply("Write add(a, b) returning the sum of a and b; raise ValueError for "
                     "non-int inputs.", "assert add(1, 2) == 3"),
        "rev": reply("Write rev(s) returning s reversed, without slicing, in O(n) time.",
                     "assert rev('abc') == 'cba'"),
    }

    def teacher(prompts):
        return [outputs["add"] if "add" in p else outputs["rev"] for p in prompts]

    problems, report = evolve(SEEDS, teacher, rounds=2, seed=0)
    # round 1 keeps both; round 2 gets the same text back -> unchanged from its parent
    assert [p.id for p in problems][:2] == ["s1", "s2"]
    assert len(problems) == 4 and report.kept == 2
    assert dict(report.rejected) == {"unchanged": 2}
    assert problems[2].entry_point == "add"


@pytest.mark.parametrize("output, reason", [
    (reply("I'm sorry, I cannot do that task for you today.", "assert add(1, 2) == 3"), "refusal"),
    (reply("Too short.", "assert add(1, 2) == 3"), "too_short"),
    (reply("Write add(a, b) returning the sum of a and b.", "assert add(1, 2) == 3"),
     "unchanged"),
    ("### Problem\nWrite add(a, b) that sums two ints and checks types.", "no_tests"),
    (reply("Write add(a, b) that sums two ints and checks types.", "assert add(1, 2 == 3"),
     "tests_do_not_compile"),
    (reply("Write add(a, b) that sums two ints and checks types.", "assert plus(1, 2) == 3"),
     "entry_point_not_tested"),
    (reply("Write add(a, b), the sum of a and b. Make the following programming problem "
           "harder.", "assert add(1, 2) == 3"), "leaked_template"),
    (reply("Write add(a, b) returning the sum of a and b!", "assert add(1, 2) == 3"),
     "near_duplicate"),
])
def test_each_rejection_reason_is_counted(output, reason):
    _, report = evolve(SEEDS[:1], lambda prompts: [output] * len(prompts), rounds=1)
    assert dict(report.rejected) == {reason: 1} and report.kept == 0


def test_near_duplicates_are_caught():
    idx = NearDupIndex(0.8)
    base = ("Write a function that returns the sum of all the even numbers in a list of "
            "integers and returns zero when the list is empty or has no even numbers at all")
    idx.add(base)
    assert idx.check(base.upper()) == "duplicate"
    assert idx.check(base + " please") == "near_duplicate"
    assert idx.check("Write a function that parses an ISO date string into a tuple") is None


def test_jsonl_teacher_outputs_keyed_by_request_id(tmp_path):
    req = evolution_requests(SEEDS, np.random.default_rng(0))
    path = tmp_path / "teacher.jsonl"
    path.write_text(json.dumps({"id": req[0].id, "output": reply(
        "Write add(a, b) returning a + b for ints, raising TypeError otherwise.",
        "assert add(2, 2) == 4")}) + "\n")
    problems, report = evolve(SEEDS, load_teacher_outputs(path), rounds=1, seed=0,
                                include_seeds=False)
    assert [p.id for p in problems] == [req[0].id]
    assert report.rejected["no_teacher_output"] == 1
    path.write_text('{"id": 1}\n')
    with pytest.raises(DataError, match="line 1"):
        load_teacher_outputs(path)
