"""Decontamination of pretraining data: a HumanEval solution planted inside a file (indented
and re-wrapped differently) is removed and counted under its benchmark; user benchmark files;
clean files kept."""

from __future__ import annotations

import gzip
import json

import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.config.data import BenchmarkFileConfig, DecontaminationConfig
from megatron_rrtf.data.decontaminate import BenchmarkMatcher, normalize_whitespace
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.rrtf.decontaminate import humaneval_path


def humaneval(task: int) -> dict:
    with gzip.open(humaneval_path(), "rt") as f:
        return [json.loads(line) for line in f][task]


def long_solution() -> str:
    """A canonical solution long enough to be used (>= min_chars after normalisation)."""
    for i in range(164):
        solution = humaneval(i)["canonical_solution"]
        if len(normalize_whitespace(solution)) > 120:
            return solution
    raise AssertionError("no long solution")


def test_matcher_ignores_layout_and_names_the_first_benchmark():
    matcher = BenchmarkMatcher.from_config(DecontaminationConfig(enabled=True))
    task = humaneval(0)
    program = task["prompt"] + task["canonical_solution"]
    assert matcher.match("# header\n" + program + "\nprint(1)\n") == "humaneval_infill"
    # the solution alone, re-indented one level (inside a class) and with tabs
    moved = "\n".join("\t    " + line for line in long_solution().splitlines())
    assert matcher.match("class Wrapper:\n" + moved) == "humaneval"
    assert matcher.match("def unrelated(x):\n    return x + 1\n") is None
    # a one-line solution is shorter than min_chars and never used
    assert all(len(n) >= 50 for _, needles in matcher.needles for n in needles)


def test_planted_humaneval_solution_is_removed_as_contaminated(tmp_path, tiny_tokenizer_path):
    code = tmp_path / "code"
    code.mkdir()
    for i in range(4):
        (code / f"clean{i}.py").write_text(f"def clean_{i}(x):\n    return x * {i}\n" * 3)
    planted = "import math\n\n\ndef helper(values):\n" + "\n".join(
        "    " + line for line in long_solution().splitlines()) + "\n"
    (code / "planted.py").write_text(planted)
    bench = tmp_path / "private_bench.jsonl"
    secret = "def secret_task(n):\n    return sum(i * i for i in range(n) if i % 3 == 0)\n"
    bench.write_text(json.dumps({"question": "Sum squares", "answer": secret}) + "\n")
    (code / "leaks_private.py").write_text("# copied\n" + secret.replace("    ", "  "))
    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        "data.workers=1", "data.tasks=2", "data.heldout_fraction=0.0",
        "data.decontaminate.enabled=true",
        f"data.decontaminate.files=[{{name: private, path: '{bench}', "
        "fields: [answer]}]",
        f"data.sources=[{{name: py, domain: code, dir: '{code}', glob: '*.py'}}]"])
    manifest = preprocess(config, progress=False)
    py = manifest["sources"]["py"]
    assert {k: v for k, v in py["skipped"].items() if v} == {
        "contaminated:humaneval": 1, "contaminated:private": 1}
    assert py["skipped"]["contaminated:humaneval_infill"] == 0  # counted, named, zero
    assert py["docs_written"] == 4


def test_bad_benchmark_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown benchmark 'mbpp'"):
        load_config([], ["data.decontaminate.builtin=[mbpp]"])
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps({"prompt": "x" * 80}) + "\n")
    with pytest.raises(DataError, match="has no text field 'solution'"):
        BenchmarkMatcher.from_config(DecontaminationConfig(
            enabled=True, builtin=[], files=[BenchmarkFileConfig("b", str(bench))]))
