"""Sandbox verdicts on a Ray cluster: `run_many_ray` has `run_many`'s contract (jobs in, one
ExecutionResult per job, in job order) but runs the jobs as Ray tasks, each on whatever node
Ray places it. A task calls this package's `run_many` there, so every verdict is decided on that
node by the same sandbox, fork server and outcome rules as a local run; only plain data (Job,
SandboxLimits, ExecutionResult) crosses the network. The driver never runs candidate code.

Every node needs this package importable (installed in the environment Ray's workers use) and
the sandbox's own requirements (docs/sandbox.md: Linux, user namespaces or root).

Ray (extra `ray`) is imported on first use. The driver joins `address` (rrtf.ray_address) or, if
Ray is not initialised and no address is given, whatever `ray.init()` finds (RAY_ADDRESS, or a
new single-machine instance).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.sandbox.runner import Job, SandboxLimits, run_many
from megatron_rrtf.sandbox.verdict import ExecutionResult

log = logging.getLogger(__name__)

RAY_MISSING = ("rrtf.executor=ray needs Ray on the driver and every node (pip install "
               "'megatron-rrtf[ray]'), or set rrtf.executor=local")
JOBS_PER_TASK = 8
"""Programs per Ray task: amortises the task round trip (~ms) over several sandbox runs (each
tens of ms) while keeping tasks small enough to spread over the cluster."""


def judge_jobs(jobs: list[Job], limits: SandboxLimits) -> list[ExecutionResult]:
    """The body of one Ray task: this node's sandbox, one program at a time (the task holds one
    CPU)."""
    return run_many(jobs, workers=1, limits=limits)


def import_ray() -> Any:
    """The ray module, or a ConfigError naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"{RAY_MISSING} ({exc})") from None
    return ray


def run_many_ray(jobs: Sequence[Job], workers: int | None = None,
                 limits: SandboxLimits | None = None, address: str | None = None,
                 jobs_per_task: int = JOBS_PER_TASK) -> list[ExecutionResult]:
    """run_many on a Ray cluster; results in job order. workers: Ray tasks in flight at once
    (None: as many as Ray schedules, one per free CPU)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"verdict workers={workers} must be >= 1")
    if not jobs:
        return []
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    limits = limits or SandboxLimits()
    task = ray.remote(num_cpus=1)(judge_jobs)
    batches = [list(jobs[i:i + jobs_per_task]) for i in range(0, len(jobs), jobs_per_task)]
    limit = workers or len(batches)
    refs: list[Any] = []
    in_flight: list[Any] = []
    for batch in batches:
        if len(in_flight) >= limit:
            _, in_flight = ray.wait(in_flight, num_returns=1)
        ref = task.remote(batch, limits)
        refs.append(ref)
        in_flight.append(ref)
    results = [r for batch in ray.get(refs) for r in batch]
    if len(results) != len(jobs):
        raise RuntimeError(f"Ray returned {len(results)} verdicts for {len(jobs)} jobs")
    log.info("ray: %d verdicts from %d tasks", len(results), len(batches))
    return results
