"""Where verdicts are decided: rrtf.executor -> a `run_many`-shaped callable (jobs -> results in
order). `local` runs sandboxes on this machine's cores (runner.run_many); `ray` runs the same
sandbox as Ray tasks on a cluster's nodes (ray_executor.run_many_ray)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.sandbox.runner import Job, SandboxLimits, run_many
from megatron_rrtf.sandbox.verdict import ExecutionResult

RunMany = Callable[[Sequence[Job]], list[ExecutionResult]]


def executor_run_many(executor: str, workers: int | None = None,
                      limits: SandboxLimits | None = None,
                      ray_address: str | None = None) -> RunMany:
    """The run_many of `executor` (local | ray) with its workers, limits and cluster bound."""
    limits = limits or SandboxLimits()
    if executor == "local":
        return partial(run_many, workers=workers, limits=limits)
    if executor == "ray":
        from megatron_rrtf.sandbox.ray_executor import import_ray, run_many_ray

        import_ray()  # a missing Ray fails here, before sampling, not after it

        return partial(run_many_ray, workers=workers, limits=limits, address=ray_address)
    raise ConfigError(f"rrtf.executor={executor!r} is not one of local, ray")
