"""Evol-Instruct-style in-depth evolution of seed problems through a teacher (PanGu-Coder2's
data step: CodeAlpaca seeds -> evolved problems -> rule-based filter -> dedup).

Per round, each problem gets one rewrite request: a unified template (WizardCoder's design:
one template, the evolution method as a slot) holding one of five code-specific methods, drawn
with the complexity one down-weighted (WizardCoder asks to use it rarely). Our addition, since
RRTF ranks by tests and neither paper says where evolved problems' tests come from: the teacher
is also asked for assert-based tests, after a `### Tests` line, keeping the entry point.

The teacher is either a function `generate(prompts) -> outputs` (e.g. a local HF model) or a
mapping request id -> output (`load_teacher_outputs` reads {"id", "output"} JSON lines, for
outputs produced offline from `requests_to_jsonl`).

Kept outputs pass, in order (each rejection is counted by reason): a teacher output exists;
not a refusal; no leaked template text; instruction of 5 words .. `max_chars` characters; not
unchanged from its parent; tests present and compile; the entry point appears in the tests;
not an exact duplicate (case/whitespace-normalised) of a kept or seed problem; not a near
duplicate (word 5-gram Jaccard >= rrtf.near_dup_jaccard, 0.8 by default) of one. The number of
rounds is rrtf.evol_rounds (`mrrtf rrtf evolve` reads both from the config).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.errors import DataError
from megatron_rrtf.jsonl import iter_jsonl
from megatron_rrtf.rrtf.extract import extract_code
from megatron_rrtf.rrtf.problems import Problem

log = logging.getLogger(__name__)

EVOL_TEMPLATE = (
    "Make the following programming problem somewhat more difficult.\n\n"
    "Method to use (others are allowed too):\n{method}\n\n"
    "Problem:\n{instruction}\n\n"
    "Reply with the new problem after a line '### Problem', then Python assert statements that "
    "check a correct solution after a line '### Tests'.{entry_point_hint}"
)
EVOL_METHODS: dict[str, tuple[str, float]] = {
    # name: (instruction to the teacher, sampling weight)
    "add_constraints": ("Add one new constraint or requirement, in roughly ten more words.", 1.0),
    "rarer_requirement": ("Swap a common requirement of the task for a rarer, more specific "
                          "one.", 1.0),
    "more_reasoning": ("If a few logical steps solve it, make it need more reasoning steps.",
                       1.0),
    "misleading_code": ("Show a piece of wrong code as a reference, to mislead.", 1.0),
    "complexity": ("Ask for a tighter time or space complexity bound.", 0.25),
}
_LEAK_MARKERS = ("make the following programming problem", "method to use", "### problem",
                 "### tests")
_REFUSALS = ("i'm sorry", "i am sorry", "as an ai", "i cannot", "i can't")


@dataclass(frozen=True)
class EvolRequest:
    id: str
    parent_id: str
    method: str
    round: int
    prompt: str


@dataclass
class EvolveReport:
    requested: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        text = f"evolution: {self.requested} requests, kept {self.kept}"
        for reason, n in sorted(self.rejected.items()):
            text += f"\n  rejected {n} {reason}"
        return text


Teacher = Callable[[list[str]], list[str]] | Mapping[str, str]


def evolution_requests(problems: Sequence[Problem], rng: np.random.Generator,
                       round_index: int = 1) -> list[EvolRequest]:
    """One rewrite request per problem; ids are `<parent>-r<round>-<method>`."""
    names = list(EVOL_METHODS)
    weights = np.array([EVOL_METHODS[n][1] for n in names])
    picks = rng.choice(len(names), size=len(problems), p=weights / weights.sum())
    out = []
    for p, k in zip(problems, picks):
        method = names[int(k)]
        hint = (f" Keep the function name {p.entry_point}." if p.entry_point else "")
        prompt = EVOL_TEMPLATE.format(method=EVOL_METHODS[method][0],
                                      instruction=p.instruction.strip(), entry_point_hint=hint)
        out.append(EvolRequest(f"{p.id}-r{round_index}-{method}", p.id, method, round_index,
                               prompt))
    return out


def requests_to_jsonl(path: str | Path, requests: Sequence[EvolRequest]) -> None:
    Path(path).write_text("".join(json.dumps(r.__dict__) + "\n" for r in requests),
                          encoding="utf-8")


def load_teacher_outputs(path: str | Path) -> dict[str, str]:
    """{"id": request id, "output": text} per line -> {id: output}."""
    out: dict[str, str] = {}
    for n, obj in iter_jsonl(path, "teacher outputs file"):
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) \
                or not isinstance(obj.get("output"), str):
            raise DataError(f"{path} line {n}: need {{\"id\": str, \"output\": str}}")
        out[obj["id"]] = obj["output"]
    return out


def parse_teacher_output(text: str) -> tuple[str, str]:
    """(instruction, tests) from a teacher reply; tests may be fenced. Missing parts are ''."""
    problem_part, _, tests_part = text.partition("### Tests")
    if "### Problem" in problem_part:
        problem_part = problem_part.split("### Problem", 1)[1]
    problem_part = problem_part.strip().lstrip(":").strip()
    tests = extract_code(tests_part, stop_markers=("### Problem",)) if tests_part else ""
    return problem_part, tests


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def shingles(text: str, n: int = 5) -> frozenset[tuple[str, ...]]:
    w = re.findall(r"\w+", text.lower())
    if len(w) < n:
        return frozenset([tuple(w)])
    return frozenset(tuple(w[i:i + n]) for i in range(len(w) - n + 1))


class NearDupIndex:
    """Exact (normalised) and near-duplicate (shingle Jaccard) lookup over kept texts."""

    def __init__(self, jaccard: float = RRTFConfig.near_dup_jaccard) -> None:
        self.jaccard = jaccard
        self.exact: set[str] = set()
        self.sets: list[frozenset] = []
        self.postings: dict[tuple[str, ...], list[int]] = {}

    def check(self, text: str) -> str | None:
        """'duplicate', 'near_duplicate' or None."""
        if normalise(text) in self.exact:
            return "duplicate"
        s = shingles(text)
        counts: Counter[int] = Counter()
        for g in s:
            counts.update(self.postings.get(g, ()))
        for i, shared in counts.items():
            if shared / len(s | self.sets[i]) >= self.jaccard:
                return "near_duplicate"
        return None

    def add(self, text: str) -> None:
        self.exact.add(normalise(text))
        s = shingles(text)
        for g in s:
            self.postings.setdefault(g, []).append(len(self.sets))
        self.sets.append(s)


def _ask(teacher: Teacher, requests: Sequence[EvolRequest]) -> list[str | None]:
    if isinstance(teacher, Mapping):
        return [teacher.get(r.id) for r in requests]
    outputs = list(teacher([r.prompt for r in requests]))
    if len(outputs) != len(requests):
        raise DataError(f"teacher returned {len(outputs)} outputs for {len(requests)} prompts")
    return outputs


def _reject_reason(instruction: str, tests: str, parent: Problem, max_chars: int) -> str | None:
    low = instruction.lower()
    if any(r in low[:200] for r in _REFUSALS):
        return "refusal"
    if any(m in low for m in _LEAK_MARKERS):
        return "leaked_template"
    if len(instruction.split()) < 5:
        return "too_short"
    if len(instruction) > max_chars:
        return "too_long"
    if normalise(instruction) == normalise(parent.instruction):
        return "unchanged"
    if not tests.strip():
        return "no_tests"
    try:
        compile(tests, "<evolved tests>", "exec")
    except (SyntaxError, ValueError):
        return "tests_do_not_compile"
    if parent.entry_point and not re.search(rf"\b{re.escape(parent.entry_point)}\b", tests):
        return "entry_point_not_tested"
    return None


def evolve(
    seeds: Sequence[Problem],
    teacher: Teacher,
    rounds: int,
    seed: int = 0,
    near_dup_jaccard: float = RRTFConfig.near_dup_jaccard,
    max_chars: int = 4000,
    include_seeds: bool = True,
) -> tuple[list[Problem], EvolveReport]:
    """Run `rounds` of in-depth evolution; round r rewrites the problems kept in round r-1.
    Returns (seeds if include_seeds + every kept evolved problem, report)."""
    rng = np.random.default_rng(seed)
    report = EvolveReport()
    index = NearDupIndex(near_dup_jaccard)
    for p in seeds:
        index.add(p.instruction)
    kept_all: list[Problem] = []
    current = list(seeds)
    for r in range(1, rounds + 1):
        requests = evolution_requests(current, rng, r)
        report.requested += len(requests)
        parents = {p.id: p for p in current}
        next_round = []
        for req, output in zip(requests, _ask(teacher, requests)):
            if output is None:
                report.rejected["no_teacher_output"] += 1
                continue
            parent = parents[req.parent_id]
            instruction, tests = parse_teacher_output(output)
            reason = _reject_reason(instruction, tests, parent, max_chars) \
                or index.check(instruction)
            if reason:
                report.rejected[reason] += 1
                continue
            index.add(instruction)
            child = Problem(req.id, instruction, tests, parent.entry_point)
            next_round.append(child)
        kept_all += next_round
        current = next_round
        if not current:
            break
    report.kept = len(kept_all)
    log.info("%s", report.summary())
    return (list(seeds) if include_seeds else []) + kept_all, report
