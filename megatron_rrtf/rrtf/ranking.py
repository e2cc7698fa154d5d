"""Rank candidate responses by what their code does under the problem's tests.

PanGu-Coder2 orders outcomes compile error < runtime error < partial pass < all pass and gives
no numbers. Ours (score of one execution result):

  syntax_error                0.0
  error, timeout              1.0   (the program ran, then crashed or hung)
  failed                      2.0 + tests_passed / tests_total, capped at 2.99
                                    (partial credit; stays below an all-pass)
  passed                      3.0

One outcome level is a gap of 1, so the RRTF pair weight (r_tea - r_stu) reads as "levels
apart"; partial credit moves within [2, 3). At equal score a teacher response ranks above a
student one; the loss's tie rule (losses.rrtf_loss tie_weight) gives the same order.

The functions read only `outcome`, `tests_passed` and `tests_total` of the sandbox's
ExecutionResult (megatron_rrtf.eval.sandbox), so this module does not import the sandbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from megatron_rrtf.errors import DataError

OUTCOMES = ("syntax_error", "error", "timeout", "failed", "passed")
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


def score(result: ExecutionLike) -> float:
    """Numeric score of one execution result (see the module docstring)."""
    outcome = result.outcome
    if outcome == "passed":
        return SCORE_PASSED
    if outcome == "failed":
        frac = result.tests_passed / result.tests_total if result.tests_total > 0 else 0.0
        return min(SCORE_PARTIAL_BASE + frac, SCORE_PARTIAL_CAP)
    if outcome in ("error", "timeout"):
        return SCORE_RUNTIME_ERROR
    if outcome == "syntax_error":
        return SCORE_SYNTAX_ERROR
    raise ValueError(f"unknown execution outcome {outcome!r}; expected one of {OUTCOMES}")


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
                       score=-neg, rank=rank, index=order, tests_passed=result.tests_passed,
                       tests_total=result.tests_total)
        for rank, (neg, _, order, text, source, teacher, result) in enumerate(items)
    ]


def outcome_distribution(ranked: Iterable[RankedResponse]) -> dict[str, dict[str, int]]:
    """Per source: how many responses had each outcome (plus a 'total')."""
    counts: dict[str, Counter[str]] = {}
    for r in ranked:
        counts.setdefault(r.source, Counter())[r.outcome] += 1
    return {src: {o: c[o] for o in OUTCOMES} | {"total": sum(c.values())}
            for src, c in sorted(counts.items())}


def format_distribution(dist: dict[str, dict[str, int]]) -> str:
    """A small fixed-width table of outcome_distribution for logs and the CLI."""
    head = f"{'source':<24}" + "".join(f"{o:>14}" for o in OUTCOMES) + f"{'total':>8}"
    lines = [head]
    for src, row in dist.items():
        lines.append(f"{src:<24}" + "".join(f"{row[o]:>14}" for o in OUTCOMES)
                     + f"{row['total']:>8}")
    return "\n".join(lines)


def valid_rrtf_pairs(ranked: Sequence[RankedResponse]) -> list[tuple[int, int]]:
    """Indices (teacher, student) into `ranked` with teacher score >= student score: the pairs
    the rrtf loss keeps (a teacher below the student is filtered out)."""
    return [(i, j) for i, t in enumerate(ranked) if t.is_teacher
            for j, s in enumerate(ranked) if not s.is_teacher and t.score >= s.score]
