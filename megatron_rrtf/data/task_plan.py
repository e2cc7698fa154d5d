"""Cut every source's input units (files) into pipeline tasks: contiguous runs in source order,
about equal in bytes. Merging the tasks' outputs in task order therefore gives each source's
documents in the same order as reading the sources one after another."""

from __future__ import annotations

from dataclasses import dataclass

from megatron_rrtf.config.data import DataConfig
from megatron_rrtf.data.sources import source_units


@dataclass(frozen=True)
class Unit:
    source: int
    """Index into data.sources."""
    path: str
    size: int


def plan_tasks(data: DataConfig, tasks: int) -> list[list[Unit]]:
    """`tasks` lists of units (some may be empty when there are fewer units than tasks)."""
    units = [Unit(i, path, size) for i, source in enumerate(data.sources)
             for path, size in source_units(source)]
    total = sum(u.size for u in units) or 1
    plan: list[list[Unit]] = [[] for _ in range(tasks)]
    done = 0
    for unit in units:
        # the task whose byte range holds this unit's midpoint; a unit is never split
        rank = min(tasks - 1, (done + unit.size // 2) * tasks // total)
        plan[rank].append(unit)
        done += unit.size
    return plan
