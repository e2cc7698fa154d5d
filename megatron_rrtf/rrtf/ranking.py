"""Rank candidate responses by what their code does under the problem's tests.

PanGu-Coder2 orders outcomes compile error < runtime error < partial pass < all pass and gives
no numbers. The sandbox's outcomes map onto those four categories, then a score:

  category       sandbox result                                       score
  compile_error  syntax_error                                         0.0
  runtime_error  error (raised while loading), timeout, or failed      1.0
                 with a non-assertion exception (the candidate
                 crashed inside a test case: NameError, IndexError...)
  partial        failed by assertions only                            2.0 + passed / total,
                                                                      capped at 2.99
  passed         passed                                               3.0

One outcome level is a gap of 1, so the RRTF pair weight (r_tea - r_stu) reads as "levels
apart"; partial credit moves within [2, 3). At equal score a teacher response ranks above a
student one; the loss's tie rule (losses.rrtf_loss tie_weight) gives the same order.

The functions read only `outcome`, `tests_passed` and `tests_total` of the sandbox's
ExecutionResult (megatron_rrtf.sandbox), so this module does not import the sandbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from megatron_rrtf.errors import DataError

OUTCOMES = ("syntax_error", "error", "timeout", "failed", "passed")
CATEGORIES = ("compile_error", "runtime_error", "partial", "passed")
SCORE_SYNTAX_ERROR = 0.0
SCORE_RUNTIME_ERROR = 1.0
SCORE_PARTIAL_BASE = 2.0
SCORE_PARTIAL_CAP = 2.99
SCORE_PASSED = 3.0

TEACHER_PREFIXES = ("teacher", "human")
STUDENT_PREFIXES = ("student",)


class ExecutionLike(Protocol):
    outcome: str
    tests_passed: int
    tests_total: int
    error_type: str | None


def category(result: ExecutionLike) -> str:
    """PanGu-Coder2's outcome category of one execution result."""
    outcome = result.outcome
    if outcome == "passed":
        return "passed"
    if outcome == "failed":
        error_type = getattr(result, "error_type", None)
        return "partial" if error_type in (None, "AssertionError") else "runtime_error"
    if outcome in ("error", "timeout"):
        return "runtime_error"
    if outcome == "syntax_error":
        return "compile_error"
    raise ValueError(f"unknown execution outcome {outcome!r}; expected one of {OUTCOMES}")


def score(result: ExecutionLike) -> float:
    """Numeric score of one execution result (see the module docstring)."""
    cat = category(result)
    if cat == "partial":
        frac = result.tests_passed / result.tests_total if result.tests_total > 0 else 0.0
        return min(SCORE_PARTIAL_BASE + frac, SCORE_PARTIAL_CAP)
    return {"passed": SCORE_PASSED, "runtime_error": SCORE_RUNTIME_ERROR,
            "compile_error": SCORE_SYNTAX_ERROR}[cat]


def is_teacher_source(source: str) -> bool:
    """`teacher`, `teacher:<name>`, `human...` are teachers; `student...` is the student."""
    name = source.lower()
    if name.startswith(TEACHER_PREFIXES):
        return True
    if name.startswith(STUDENT_PREFIXES):
        return False
    raise DataError(f"response source {source!r} is neither a teacher ('teacher', "
                    f"'teacher:<model>', 'human') nor the student ('student', 'student:<T>')")


@dataclass(frozen=True)
class RankedResponse:
    text: str
    source: str
    is_teacher: bool
    outcome: str
    """The sandbox's outcome."""
    category: str
    """compile_error | runtime_error | partial | passed."""
    score: float
    rank: int
    """0 = best; ties in score are broken teacher first, then by input order."""
    index: int = 0
    """Position of this response in the input to rank_responses."""
    tests_passed: int = 0
    tests_total: int = 0


def rank_responses(
    responses_with_results: Iterable[tuple[str, str, ExecutionLike]],
) -> list[RankedResponse]:
    """(text, source, result) per candidate of one prompt -> best-first ranked list."""
    items = []
    for order, (text, source, result) in enumerate(responses_with_results):
        teacher = is_teacher_source(source)
        items.append((-score(result), 0 if teacher else 1, order, text, source, teacher, result))
    items.sort(key=lambda it: it[:3])
    return [
        RankedResponse(text=text, source=source, is_teacher=teacher, outcome=result.outcome,
                       category=category(result), score=-neg, rank=rank, index=order,
                       tests_passed=result.tests_passed, tests_total=result.tests_total)
        for rank, (neg, _, order, text, source, teacher, result) in enumerate(items)
    ]


def outcome_distribution(ranked: Iterable[RankedResponse]) -> dict[str, dict[str, int]]:
    """Per source: how many responses fell in each category (plus a 'total')."""
    counts: dict[str, Counter[str]] = {}
    for r in ranked:
        counts.setdefault(r.source, Counter())[r.category] += 1
    return {src: {o: c[o] for o in CATEGORIES} | {"total": sum(c.values())}
            for src, c in sorted(counts.items())}


def format_distribution(dist: dict[str, dict[str, int]]) -> str:
    """A small fixed-width table of outcome_distribution for logs and the CLI."""
    head = f"{'source':<24}" + "".join(f"{o:>15}" for o in CATEGORIES) + f"{'total':>8}"
    lines = [head]
    for src, row in dist.items():
        lines.append(f"{src:<24}" + "".join(f"{row[o]:>15}" for o in CATEGORIES)
                     + f"{row['total']:>8}")
    return "\n".join(lines)


def valid_rrtf_pairs(ranked: Sequence[RankedResponse]) -> list[tuple[int, int]]:
    """Indices (teacher, student) into `ranked` with teacher score >= student score: the pairs
    the rrtf loss keeps (a teacher below the student is filtered out)."""
    return [(i, j) for i, t in enumerate(ranked) if t.is_teacher
            for j, s in enumerate(ranked) if not s.is_teacher and t.score >= s.score]
