"""Ranking stage: responses from the problems file and response JSONL files, extracted code,
verdicts from an injected runner, ranked set written with each response's outcome."""

import json
from dataclasses import dataclass

import pytest

from align.rank import rank_problems, read_responses, write_ranked
from megatron_rrtf.config.rrtf import STOP_MARKERS
from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records
from megatron_rrtf.rrtf.problems import Problem, Response
from mrrtf.cli import main

DEMO_CONFIG = "configs/rrtf/tiny_demo.yaml"


@dataclass(frozen=True)
class Result:
    outcome: str
    tests_passed: int
    tests_total: int
    error_type: str | None = None


def in_process_runner(jobs):
    """Stand-in for the sandbox, for our own demo code only: assert-by-assert in-process."""
    out = []
    for job in jobs:
        ns = {}
        try:
            exec(compile(job.program, "<c>", "exec"), ns)
        except SyntaxError:
            out.append(Result("syntax_error", 0, 0))
            continue
        lines = [x for x in job.tests.splitlines() if x.strip()]
        passed, error_type = 0, None
        for line in lines:          # like the sandbox: every case runs, the first failure counts
            try:
                exec(line, ns)
                passed += 1
            except Exception as exc:
                error_type = error_type or type(exc).__name__
        out.append(Result("passed" if error_type is None else "failed", passed, len(lines),
                          error_type))
    return out


def test_rank_stage_on_demo_teacher_and_student_responses(tmp_path):
    train, _ = generate_demo_problems(8, 0, seed=0)
    teacher = teacher_records(train, per_problem=2, correct_fraction=0.5, seed=1)
    resp_path = tmp_path / "responses.jsonl"
    student = [{"problem_id": d.problem.id, "text": "def nope(:\n", "source": "student"}
               for d in train]
    resp_path.write_text("".join(json.dumps(r) + "\n" for r in teacher + student))
    problems = [d.problem for d in train]
    ranked = rank_problems(problems, STOP_MARKERS, read_responses([resp_path]),
                           in_process_runner)
    assert len(ranked) == 8
    kinds = {(r["problem_id"], r["text"]): r["kind"] for r in teacher}
    for problem, rr, codes in ranked:
        assert [r.rank for r in rr] == list(range(3))
        assert rr[-1].source == "student" and rr[-1].outcome == "syntax_error"
        for r, code in zip(rr, codes):
            if r.is_teacher:
                kind = kinds[(problem.id, r.text)]
                assert (r.outcome == "passed") == (kind == "correct")
                assert code.startswith("def ")
                if kind == "runtime_error":
                    assert r.category == "runtime_error"
    dist = write_ranked(tmp_path / "ranked.jsonl", ranked)
    assert dist["student"]["compile_error"] == 8
    line = json.loads((tmp_path / "ranked.jsonl").read_text().splitlines()[0])
    assert {"outcome", "category", "score", "rank", "code", "is_teacher"} <= set(
        line["responses"][0])


def test_rank_stage_through_the_real_sandbox():
    p = Problem("p", "add", "assert add(1, 2) == 3\nassert add(0, 0) == 0\n", "add")
    responses = {"p": [Response("def add(a, b):\n    return a + b\n", "teacher:t"),
                       Response("def add(a, b):\n    return c\n", "student"),
                       Response("def add(a, b):\n    return a * b\n", "student"),
                       Response("def add(a, b)\n    return a\n", "student")]}
    [(_, ranked, _)] = rank_problems([p], STOP_MARKERS, responses)
    assert [(r.category, r.tests_passed) for r in ranked] == [
        ("passed", 2), ("partial", 1), ("runtime_error", 0), ("compile_error", 0)]


def test_embedded_responses_are_ranked_too():
    p = Problem("p", "add", "assert add(1, 2) == 3", "add",
                (Response("def add(a, b):\n    return a - b", "student"),
                 Response("```python\ndef add(a, b):\n    return a + b\n```", "human")))
    [(_, ranked, codes)] = rank_problems([p], STOP_MARKERS, None, in_process_runner)
    assert [r.source for r in ranked] == ["human", "student"]
    assert codes[0] == "def add(a, b):\n    return a + b\n"


def test_bad_response_lines_name_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"problem_id": "p", "text": "x", "source": "student"}\n{"problem_id": 1}\n')
    with pytest.raises(DataError, match="line 2"):
        read_responses([path])
    path.write_text('{"problem_id": "p", "text": "x", "source": "gpt"}\n')
    with pytest.raises(DataError, match="neither a teacher"):
        read_responses([path])


def test_cli_demo_data_writes_problems_and_teacher(tmp_path, capsys):
    assert main(["rrtf", "demo-data", "--out-dir", str(tmp_path), "--train", "12",
                 "--heldout", "3", "--correct-fraction", "0.5"]) == 0
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 12
    assert len((tmp_path / "teacher.jsonl").read_text().splitlines()) == 24
    assert main(["rrtf", "evolve", DEMO_CONFIG, "--seeds", str(tmp_path / "train.jsonl"),
                 "--write-requests", str(tmp_path / "req.jsonl")]) == 0
    assert len((tmp_path / "req.jsonl").read_text().splitlines()) == 12
    assert main(["rrtf", "evolve", DEMO_CONFIG, "--seeds", str(tmp_path / "train.jsonl")]) == 2
    assert "needs --out and --teacher-outputs" in capsys.readouterr().err


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_configured_stop_markers_change_what_ranking_extracts(tmp_path):
    """rrtf.stop_markers reaches extraction in the rank step: code followed by a custom end
    marker and prose fails to compile with the default markers and passes once configured."""
    problems = _write_jsonl(tmp_path / "p.jsonl", [Problem("p", "add", "assert add(1, 2) == 3\n",
                                                           "add").to_json()])
    responses = _write_jsonl(tmp_path / "r.jsonl", [
        {"problem_id": "p", "source": "student",
         "text": "def add(a, b):\n    return a + b\n<END>\nThat was my answer."}])

    def rank(*overrides):
        out = tmp_path / f"ranked_{len(overrides)}.jsonl"
        assert main(["rrtf", "rank", DEMO_CONFIG, *overrides, "--problems", problems,
                     "--responses", responses, "--out", str(out)]) == 0
        return json.loads(out.read_text())["responses"][0]

    default = rank()
    assert default["outcome"] == "syntax_error" and "<END>" in default["code"]
    configured = rank('rrtf.stop_markers=["<END>"]')
    assert configured["outcome"] == "passed"
    assert configured["code"] == "def add(a, b):\n    return a + b\n"


def test_decontaminate_reads_its_ngram_size_and_threshold_from_the_config(tmp_path):
    from megatron_rrtf.eval.humaneval import load_problems as humaneval

    copied = next(iter(humaneval().values()))["prompt"]
    half = " ".join(copied.split()[: len(copied.split()) // 2])
    problems = _write_jsonl(tmp_path / "p.jsonl", [
        Problem("copy", copied, "assert f() == 1", "f").to_json(),
        Problem("half", half + " " + " ".join(f"novel{i}" for i in range(60)),
                "assert f() == 1", "f").to_json()])

    def kept(*overrides):
        out = tmp_path / "kept.jsonl"
        assert main(["rrtf", "decontaminate", DEMO_CONFIG, *overrides, "--problems", problems,
                     "--out", str(out)]) == 0
        return [json.loads(line)["id"] for line in out.read_text().splitlines()]

    assert kept() == []                                       # n = 10, threshold 0.1
    assert kept("rrtf.decontam_threshold=0.9") == ["half"]
    assert kept("rrtf.decontam_ngram=1000") == ["copy", "half"]  # no 1000-word windows at all


def test_evolve_reads_its_rounds_and_near_duplicate_threshold_from_the_config(tmp_path, capsys):
    seed = Problem("s1", "Write a function add(a, b) that returns the sum of two integers a and b.",
                   "assert add(1, 2) == 3", "add")
    seeds = _write_jsonl(tmp_path / "seeds.jsonl", [seed.to_json()])
    assert main(["rrtf", "evolve", DEMO_CONFIG, "--seeds", seeds, "--write-requests",
                 str(tmp_path / "req.jsonl")]) == 0
    [request] = [json.loads(line) for line in (tmp_path / "req.jsonl").read_text().splitlines()]
    near_copy = ("### Problem\nWrite a function add(a, b) that returns the sum of two integers a "
                 "and b, fast.\n### Tests\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n")
    outputs = _write_jsonl(tmp_path / "out.jsonl", [{"id": request["id"], "output": near_copy}])

    def evolved(*overrides):
        out = tmp_path / "evolved.jsonl"
        code = main(["rrtf", "evolve", DEMO_CONFIG, *overrides, "--seeds", seeds,
                     "--teacher-outputs", outputs, "--out", str(out)])
        return code, (len(out.read_text().splitlines()) if code == 0 else None)

    assert evolved() == (2, None)                                 # tiny_demo: evol_rounds 0
    assert "rrtf.evol_rounds=0: nothing to evolve" in capsys.readouterr().err
    assert evolved("rrtf.evol_rounds=1") == (0, 1)                # near duplicate of its seed
    assert evolved("rrtf.evol_rounds=1", "rrtf.near_dup_jaccard=1.0") == (0, 2)
