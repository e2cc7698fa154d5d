"""Programming problems for RRTF: the JSON-lines format, its loader and the prompt template.

One problem per line:
  {"id": "p1", "instruction": "Write a function ...", "tests": "assert f(1) == 2\\n...",
   "entry_point": "f",                                  # optional: the function under test
   "responses": [{"text": "```python ...", "source": "teacher:gpt4"}]}   # optional
`tests` is Python that asserts against the function. Bad records are skipped and counted by
reason (with the line number of the first few), never dropped silently: malformed JSON, a line
that is not an object, a field of the wrong type, missing id, missing instruction, no tests,
tests that do not compile, a duplicate id (the first one is kept), a bad entry point.
The checked records are loaded through HF `datasets` (`load_dataset("json", ...)`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_rrtf.config.rrtf import ALPACA_TEMPLATE, RRTFConfig
from megatron_rrtf.errors import DataError
from megatron_rrtf.sandbox import Job

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PromptTemplate:
    """Alpaca-style template; PanGu-Coder2 wraps the prompt in a pair of triple quotes, which we
    apply to the instruction (so it reads as a Python docstring). A `\"\"\"` inside the
    instruction is escaped to `\\"\\"\\"` so the wrapping stays one string literal."""

    text: str = ALPACA_TEMPLATE
    quote_instruction: bool = True

    def __post_init__(self) -> None:
        if self.text.count("{instruction}") != 1:
            raise DataError("prompt template must contain {instruction} exactly once, got "
                            f"{self.text!r}")

    @classmethod
    def from_config(cls, cfg: RRTFConfig) -> PromptTemplate:
        """rrtf.prompt_template with rrtf.quote_instruction."""
        return cls(cfg.prompt_template, cfg.quote_instruction)

    def format(self, instruction: str) -> str:
        body = instruction.strip()
        if self.quote_instruction:
            body = '"""\n' + body.replace('"""', '\\"\\"\\"') + '\n"""'
        return self.text.replace("{instruction}", body)


@dataclass(frozen=True)
class Response:
    text: str
    source: str


@dataclass(frozen=True)
class Problem:
    id: str
    instruction: str
    tests: str
    entry_point: str | None = None
    responses: tuple[Response, ...] = ()

    def job(self, code: str, index: int) -> Job:
        """A sandbox job running `code` (extracted from a response) against the tests."""
        return Job(code, self.tests, self.entry_point, key=f"{self.id}/{index}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "instruction": self.instruction, "tests": self.tests}
        if self.entry_point:
            out["entry_point"] = self.entry_point
        if self.responses:
            out["responses"] = [{"text": r.text, "source": r.source} for r in self.responses]
        return out


@dataclass
class LoadReport:
    path: str
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Per reason, up to 5 'line N: detail' strings."""

    def skip(self, reason: str, line: int, detail: str = "") -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(f"line {line}" + (f": {detail}" if detail else ""))

    def summary(self) -> str:
        total = self.kept + sum(self.skipped.values())
        text = f"{self.path}: kept {self.kept} of {total} problems"
        for reason, n in sorted(self.skipped.items()):
            text += f"\n  skipped {n} {reason} ({'; '.join(self.examples[reason])})"
        return text


def _check_record(obj: Any, line: int, report: LoadReport, seen: set[str]) -> dict | None:
    if not isinstance(obj, dict):
        report.skip("not_an_object", line, type(obj).__name__)
        return None
    for key in ("instruction", "tests", "entry_point"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            report.skip("bad_field_type", line, f"{key} must be a string")
            return None
    pid = obj.get("id")
    if pid is None or (isinstance(pid, str) and not pid.strip()):
        report.skip("missing_id", line)
        return None
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        report.skip("bad_field_type", line, "id must be a string or integer")
        return None
    pid = str(pid)
    if not (obj.get("instruction") or "").strip():
        report.skip("missing_instruction", line, f"id {pid}")
        return None
    tests = obj.get("tests") or ""
    if not tests.strip():
        report.skip("no_tests", line, f"id {pid}")
        return None
    try:
        compile(tests, f"<tests of {pid}>", "exec")
    except (SyntaxError, ValueError) as exc:
        report.skip("tests_do_not_compile", line, f"id {pid}: {exc.__class__.__name__}: {exc}")
        return None
    entry = obj.get("entry_point")
    if entry is not None and not entry.isidentifier():
        report.skip("bad_entry_point", line, f"id {pid}: {entry!r} is not an identifier")
        return None
    responses = obj.get("responses") or []
    if not isinstance(responses, list) or not all(
            isinstance(r, dict) and isinstance(r.get("text"), str)
            and isinstance(r.get("source"), str) for r in responses):
        report.skip("bad_responses", line,
                    f"id {pid}: responses must be a list of {{text, source}} strings")
        return None
    if pid in seen:
        report.skip("duplicate_id", line, f"id {pid}")
        return None
    seen.add(pid)
    return {"id": pid, "instruction": obj["instruction"], "tests": tests, "entry_point": entry,
            "responses": [{"text": r["text"], "source": r["source"]} for r in responses],
            "line": line}


def load_problems(path: str | Path) -> tuple[list[Problem], LoadReport]:
    """Read a problems JSONL file; return the good problems and a report of what was skipped."""
    from datasets import load_dataset  # heavy import, only when loading

    path = Path(path)
    if not path.is_file():
        raise DataError(f"problems file {path} does not exist (expected JSON lines with id, "
                        "instruction, tests)")
    report = LoadReport(str(path))
    good: list[dict] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                report.skip("malformed_json", line_no, exc.msg)
                continue
            record = _check_record(obj, line_no, report, seen)
            if record is not None:
                good.append(record)
    problems: list[Problem] = []
    if good:
        # The checked, normalised records go through datasets (one schema, arrow-backed).
        with tempfile.TemporaryDirectory() as tmp:
            clean = Path(tmp) / "problems.jsonl"
            clean.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
            ds = load_dataset("json", data_files=str(clean), split="train",
                              cache_dir=str(Path(tmp) / "cache"), keep_in_memory=True)
            for row in ds:
                problems.append(Problem(
                    id=row["id"], instruction=row["instruction"], tests=row["tests"],
                    entry_point=row["entry_point"] or None,
                    responses=tuple(Response(r["text"], r["source"])
                                    for r in (row["responses"] or []))))
    report.kept = len(problems)
    log.info("%s", report.summary())
    if not problems:
        raise DataError(f"no usable problems in {path}:\n{report.summary()}")
    return problems, report


def write_problems(path: str | Path, problems: Iterable[Problem]) -> int:
    """Write problems as JSON lines; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps(p.to_json()) + "\n")
            n += 1
    return n


def prompts_for(problems: Sequence[Problem], cfg: RRTFConfig) -> list[str]:
    """The prompt of each problem under the config's template: how sampling and held-out
    evaluation both ask."""
    template = PromptTemplate.from_config(cfg)
    return [template.format(p.instruction) for p in problems]
