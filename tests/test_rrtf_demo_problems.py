"""Demo problem family: deterministic, correct tests, held-out problems truly held out (unseen
parameters, or unseen templates), teacher responses that behave as labelled."""

from collections import Counter

import pytest

from megatron_rrtf.config.rrtf import STOP_MARKERS
from megatron_rrtf.rrtf.demo_problems import (
    BUG_KINDS,
    generate_demo_problems,
    passes,
    run_own_code,
    teacher_records,
    templates,
)
from megatron_rrtf.rrtf.extract import extract_code


@pytest.fixture(scope="module")
def problems():
    return generate_demo_problems(120, 30, seed=0)


def test_generation_is_deterministic(problems):
    again = generate_demo_problems(120, 30, seed=0)
    assert [d.to_json() for d in problems[0] + problems[1]] == [d.to_json() for d in again[0] + again[1]]
    other = generate_demo_problems(120, 30, seed=1)
    assert [d.problem.tests for d in other[0]] != [d.problem.tests for d in problems[0]]


def test_canonical_solutions_pass_their_own_several_asserts(problems):
    for dp in problems[0] + problems[1]:
        assert passes(dp.solution, dp.problem.tests), dp.problem.id
        lines = dp.problem.tests.splitlines()
        assert len(lines) >= 5 and len(set(lines)) == len(lines)
        assert dp.problem.entry_point in dp.problem.instruction


def test_heldout_params_are_trained_templates_with_instructions_never_seen(problems):
    train, held = problems
    assert len(held) == 30
    assert not {d.problem.instruction for d in train} & {d.problem.instruction for d in held}
    assert len({d.problem.instruction for d in held}) == len(held)
    assert {d.template for d in held} <= {t.name for t in templates()[0] + templates()[1]}
    assert len({d.template for d in held}) > 10  # spread over templates, not one family


def test_heldout_mode_is_checked_and_exhaustion_is_an_error():
    with pytest.raises(ValueError, match="heldout='nope'"):
        generate_demo_problems(5, 5, heldout="nope")
    with pytest.raises(ValueError, match="ask for fewer"):
        generate_demo_problems(10, 5000, seed=0)  # more than there are distinct instructions


def test_cli_offers_exactly_the_heldout_modes(capsys):
    from megatron_rrtf.rrtf.demo_problems import HELDOUT_MODES
    from mrrtf.cli import build_parser

    parser = build_parser()
    for mode in HELDOUT_MODES:
        assert parser.parse_args(["rrtf", "demo-data", "--out-dir", "d", "--heldout-mode",
                                  mode]).heldout_mode == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["rrtf", "demo-data", "--out-dir", "d", "--heldout-mode", "nope"])


def test_heldout_templates_are_disjoint_but_their_primitives_are_trained():
    problems = generate_demo_problems(120, 30, seed=0, heldout="templates")
    train_t, held_t = templates()
    train_names = {t.name for t in train_t}
    assert not train_names & {t.name for t in held_t}
    assert {d.template for d in problems[0]} <= train_names
    assert {d.template for d in problems[1]} == {t.name for t in held_t}
    for t in held_t:                       # e.g. sum_even: "sum_" and "_even" both trained
        head, tail = t.name.split("_")
        assert any(n.startswith(head + "_") for n in train_names)
        assert any(n.endswith("_" + tail) for n in train_names)


def test_teacher_responses_are_correct_or_fail_as_labelled(problems):
    dps = {d.problem.id: d for d in problems[0][:60]}
    records = teacher_records(list(dps.values()), per_problem=3, correct_fraction=0.5, seed=2)
    kinds = Counter(r["kind"] for r in records)
    assert set(kinds) == {"correct", *BUG_KINDS}
    assert 0.35 < kinds["correct"] / len(records) < 0.65
    expected = {"correct": "passed", "off_by_one": "failed", "wrong_constant": "failed",
                "runtime_error": "error"}
    for r in records:
        code = extract_code(r["text"], STOP_MARKERS)
        if r["kind"] == "syntax_error":
            with pytest.raises(SyntaxError):
                compile(code, "<t>", "exec")
        else:
            assert run_own_code(code, dps[r["problem_id"]].problem.tests) == expected[r["kind"]]


def test_correct_fraction_extremes(problems):
    dps = problems[0][:10]
    assert {r["kind"] for r in teacher_records(dps, 2, correct_fraction=1.0)} == {"correct"}
    assert "correct" not in {r["kind"] for r in teacher_records(dps, 2, correct_fraction=0.0)}
    with pytest.raises(ValueError):
        teacher_records(dps, 2, correct_fraction=1.5)
