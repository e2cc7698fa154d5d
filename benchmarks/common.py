"""Shared timing helper for the benchmarks: median wall time of repeated calls after warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(name: str, ours: float, baseline: float, unit: str, higher_is_better: bool = True) -> str:
    ratio = ours / baseline if higher_is_better else baseline / ours
    line = f"{name}: ours {ours:.4g} {unit}, baseline {baseline:.4g} {unit}, ratio {ratio:.2f}x"
    print(line, flush=True)
    return line
