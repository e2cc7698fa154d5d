"""Infilling tasks built from HumanEval's canonical solutions, and their scoring.

Rule (after the FIM paper's HumanEval-Infilling and InCoder's systematic line masking, written
down here because this is our own construction, not a copy of their files). The canonical
program is `prompt + canonical_solution`, byte for byte; every task cuts it into
prefix + middle + suffix, with the cut inside the canonical solution:

- single-line: one task per non-blank line of the solution; the middle is that whole line
  including its newline (InCoder's "one_line", minus blank lines);
- multi-line: one task per span of one or more consecutive lines whose first and last lines are
  non-blank (InCoder's "all_lines", minus spans that start or end on a blank line);
- random-span: `spans_per_problem` character spans per problem, start and end drawn uniformly
  over the solution's characters with a non-empty middle (the FIM paper's random span), from a
  numpy Generator seeded by (seed, problem number), so the same seed gives the same tasks.

On the 164 problems this gives 1033 single-line, 5815 multi-line and 1640 random-span tasks: the
task counts of the FIM paper's released benchmark (its spans may differ; its files are not used).

A generated middle is scored by putting it back between prefix and suffix and running the
problem's tests in the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.eval.humaneval import HUMANEVAL_LIMITS
from megatron_rrtf.eval.passk import mean_pass_at_k
from megatron_rrtf.sandbox import Job, SandboxLimits, run_many

InfillKind = Literal["single_line", "multi_line", "random_span"]


@dataclass(frozen=True)
class InfillTask:
    """One infilling problem: the model sees prefix and suffix and writes the middle."""

    task_id: str
    """e.g. "SingleLine/HumanEval/0/3" (kind / HumanEval id / index within the problem)."""
    prefix: str
    middle: str
    """The canonical middle."""
    suffix: str
    tests: str
    entry_point: str

    def program(self, middle: str) -> str:
        """The program to run for a generated middle."""
        return self.prefix + middle + self.suffix


def _lines(solution: str) -> list[str]:
    return solution.splitlines(keepends=True)


def _task(kind: str, problem: Mapping[str, Any], index: int, start: int, end: int) -> InfillTask:
    prompt, solution = problem["prompt"], problem["canonical_solution"]
    return InfillTask(f"{kind}/{problem['task_id']}/{index}", prompt + solution[:start],
                      solution[start:end], solution[end:], problem["test"], problem["entry_point"])


def single_line_tasks(problem: Mapping[str, Any]) -> list[InfillTask]:
    """One task per non-blank line of the canonical solution."""
    tasks, offset = [], 0
    for line in _lines(problem["canonical_solution"]):
        if line.strip():
            tasks.append(_task("SingleLine", problem, len(tasks), offset, offset + len(line)))
        offset += len(line)
    return tasks


def multi_line_tasks(problem: Mapping[str, Any]) -> list[InfillTask]:
    """One task per span of >= 1 lines starting and ending on a non-blank line."""
    lines = _lines(problem["canonical_solution"])
    starts = np.cumsum([0] + [len(line) for line in lines])
    tasks = []
    for first in range(len(lines)):
        for last in range(first, len(lines)):
            if lines[first].strip() and lines[last].strip():
                tasks.append(_task("MultiLine", problem, len(tasks), int(starts[first]),
                                   int(starts[last + 1])))
    return tasks


def random_span_tasks(problem: Mapping[str, Any], spans_per_problem: int = 10,
                      seed: int = 0) -> list[InfillTask]:
    """`spans_per_problem` random character spans, reproducible from (seed, problem number)."""
    solution = problem["canonical_solution"]
    if len(solution) < 1:
        return []
    number = int(str(problem["task_id"]).rsplit("/", 1)[-1])
    rng = np.random.default_rng([seed, number])
    tasks = []
    for _ in range(spans_per_problem):
        start, end = sorted(int(x) for x in rng.integers(0, len(solution) + 1, size=2))
        while start == end:
            start, end = sorted(int(x) for x in rng.integers(0, len(solution) + 1, size=2))
        tasks.append(_task("RandomSpan", problem, len(tasks), start, end))
    return tasks


def build_infill_tasks(problems: Mapping[str, Mapping[str, Any]], kind: InfillKind,
                       spans_per_problem: int = 10, seed: int = 0) -> list[InfillTask]:
    """Every task of one kind over all problems, in problem order."""
    if kind == "single_line":
        return [t for p in problems.values() for t in single_line_tasks(p)]
    if kind == "multi_line":
        return [t for p in problems.values() for t in multi_line_tasks(p)]
    if kind == "random_span":
        return [t for p in problems.values() for t in random_span_tasks(p, spans_per_problem, seed)]
    raise ConfigError(f"infill kind {kind!r} is not one of single_line, multi_line, random_span")


def evaluate_infills(tasks: Sequence[InfillTask], middles: Mapping[str, Sequence[str]],
                     ks: Sequence[int] = (1,), limits: SandboxLimits = HUMANEVAL_LIMITS,
                     workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Score generated middles (task_id -> samples): {"pass@k", "num_tasks", "tasks"}."""
    by_id = {t.task_id: t for t in tasks}
    unknown = sorted(set(middles) - set(by_id))
    if unknown:
        raise DataError(f"middles for unknown infill task ids {unknown[:5]}")
    order = [(task_id, i) for task_id, samples in middles.items() for i in range(len(samples))]
    jobs = [Job(by_id[t].program(middles[t][i]), by_id[t].tests, by_id[t].entry_point, key=t)
            for t, i in order]
    results = run_many(jobs, workers=workers, limits=limits, progress=progress)
    per_task: dict[str, list[dict[str, Any]]] = {t: [] for t in middles}
    for (task_id, _), result in zip(order, results):
        per_task[task_id].append(asdict(result))
    counts = [(len(r), sum(x["outcome"] == "passed" for x in r)) for r in per_task.values()]
    fewest = min((n for n, _ in counts), default=0)
    return {"pass@k": {k: mean_pass_at_k(counts, k) for k in ks if 1 <= k <= fewest},
            "num_tasks": len(per_task), "tasks": per_task}
