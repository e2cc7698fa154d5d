"""RRTF ranking stage: problems + sampled responses -> sandbox verdicts -> ranked set on disk.

Responses come from the problems file's own `responses` field and from response JSONL files,
one response per line: {"problem_id": ..., "text": ..., "source": "student" | "teacher:<m>"}
(other keys are ignored). The code of each response is taken with `extract_code` (cut at
rrtf.stop_markers, as sampling, training and held-out evaluation do) and run against the
problem's tests outside this process by `megatron_rrtf.sandbox.run_many`, or on a Ray cluster
with rrtf.executor=ray (`verdict_runner`).

Output: one line per problem, responses best first:
  {"id", "instruction", "tests", "entry_point", "responses": [{"text", "code", "source",
   "is_teacher", "outcome", "category", "score", "rank", "tests_passed", "tests_total"}]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.errors import DataError
from megatron_rrtf.jsonl import iter_jsonl
from megatron_rrtf.rrtf.extract import extract_code
from megatron_rrtf.rrtf.problems import Problem, Response
from megatron_rrtf.rrtf.ranking import (
    RankedResponse,
    is_teacher_source,
    outcome_distribution,
    rank_responses,
)
from megatron_rrtf.sandbox import ExecutionResult, Job, run_many

log = logging.getLogger(__name__)

RunMany = Callable[[list[Job]], list[ExecutionResult]]
"""Sandbox jobs -> verdicts, in order: megatron_rrtf.sandbox.run_many (with its `workers`
bound by the caller when it wants a number other than the CPU count), or `verdict_runner`'s."""


def verdict_runner(cfg: RRTFConfig, workers: int | None = None) -> RunMany:
    """The RunMany of rrtf.executor (local | ray), with `workers` (default
    rrtf.verdict_workers) sandboxes or Ray tasks at once."""
    from megatron_rrtf.sandbox.executors import executor_run_many

    return executor_run_many(cfg.executor, workers or cfg.verdict_workers,
                             ray_address=cfg.ray_address)


def read_responses(paths: Iterable[str | Path]) -> dict[str, list[Response]]:
    """Response JSONL files -> {problem_id: [Response, ...]} in file order."""
    out: dict[str, list[Response]] = {}
    for path in map(Path, paths):
        for n, obj in iter_jsonl(path, "responses file"):
            if not isinstance(obj, dict) or not all(
                    isinstance(obj.get(k), str) for k in ("problem_id", "text", "source")):
                raise DataError(f"{path} line {n}: need string fields problem_id, text, source")
            is_teacher_source(obj["source"])  # refuse unknown sources early, with the name
            out.setdefault(obj["problem_id"], []).append(Response(obj["text"], obj["source"]))
    return out


def rank_problems(
    problems: Sequence[Problem],
    stop_markers: Sequence[str],
    extra_responses: dict[str, list[Response]] | None = None,
    run_many: RunMany = run_many,
) -> list[tuple[Problem, list[RankedResponse], list[str]]]:
    """Run every response's code (extracted with `stop_markers`, i.e. rrtf.stop_markers) against
    its problem's tests and rank per problem.

    Returns (problem, ranked responses, extracted code in ranked order) per problem that has
    responses."""
    extra_responses = extra_responses or {}
    known = {p.id for p in problems}
    unknown = sorted(set(extra_responses) - known)
    if unknown:
        log.warning("%d response problem ids are not in the problems file (first: %s)",
                    len(unknown), unknown[0])
    jobs, owners = [], []
    for p in problems:
        for i, r in enumerate(list(p.responses) + extra_responses.get(p.id, [])):
            code = extract_code(r.text, stop_markers)
            jobs.append(p.job(code, i))
            owners.append((p.id, r, code))
    results = run_many(jobs) if jobs else []
    if len(results) != len(jobs):
        raise DataError(f"sandbox returned {len(results)} results for {len(jobs)} jobs")
    by_problem: dict[str, list[tuple[str, str, Any, str]]] = {}
    for (pid, resp, code), res in zip(owners, results):
        by_problem.setdefault(pid, []).append((resp.text, resp.source, res, code))
    out = []
    for p in problems:
        items = by_problem.get(p.id)
        if not items:
            continue
        ranked = rank_responses((t, s, res) for t, s, res, _ in items)
        codes = [items[r.index][3] for r in ranked]
        out.append((p, ranked, codes))
    return out


def ranked_record(problem: Problem, ranked: Sequence[RankedResponse],
                  codes: Sequence[str]) -> dict[str, Any]:
    return {
        "id": problem.id, "instruction": problem.instruction, "tests": problem.tests,
        "entry_point": problem.entry_point,
        "responses": [{"text": r.text, "code": c, "source": r.source, "is_teacher": r.is_teacher,
                       "outcome": r.outcome, "category": r.category, "score": r.score,
                       "rank": r.rank,
                       "tests_passed": r.tests_passed, "tests_total": r.tests_total}
                      for r, c in zip(ranked, codes)],
    }


def write_ranked(path: str | Path, ranked_set) -> dict[str, dict[str, int]]:
    """Write the ranked set as JSON lines; return the per-source outcome distribution."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    everything: list[RankedResponse] = []
    with path.open("w", encoding="utf-8") as f:
        for problem, ranked, codes in ranked_set:
            f.write(json.dumps(ranked_record(problem, ranked, codes)) + "\n")
            everything += ranked
    return outcome_distribution(everything)
