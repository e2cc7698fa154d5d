"""Seed aggregation and the noise rule of the objective comparison.

Every setting of the grid is trained over several seeds (model init and data order); a metric is
then reported as mean ± sd over the seeds (sample standard deviation, n - 1 in the denominator),
and a difference between two settings is marked only when it exceeds the seeds' spread:

    beyond noise  <=>  |mean_a - mean_b| > 2 * sqrt(sd_a**2 / n_a + sd_b**2 / n_b)

i.e. the difference is more than twice its standard error (Welch's form, unequal spreads).
With 3 seeds this is a screening rule, not a significance test (a two-sided 95% t-test on ~4
degrees of freedom would need ~2.8 standard errors); it says "the seeds do not explain this
difference", not "p < 0.05". Fewer than 2 seeds on either side give no spread, so nothing is
marked (`None`: cannot say).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NOISE_FACTOR = 2.0
"""A difference counts when it exceeds this many standard errors."""

RULE = ("a difference is marked when |Δmean| > 2·sqrt(sd_a²/n_a + sd_b²/n_b) (twice the "
        "standard error of the difference over seeds; sample sd; needs ≥ 2 seeds per setting)")


@dataclass(frozen=True)
class SeedStats:
    """One metric of one setting over its seeds."""

    mean: float
    sd: float | None
    """Sample standard deviation (n - 1); None with fewer than 2 values."""
    n: int
    values: tuple[float, ...]

    def __str__(self) -> str:
        return format_stats(self)


def aggregate(values: Sequence[float | None]) -> SeedStats | None:
    """mean ± sd over the seeds' values (None values, e.g. a missing metric, are left out);
    None when no value is left."""
    kept = tuple(float(v) for v in values if v is not None and not math.isnan(float(v)))
    if not kept:
        return None
    n = len(kept)
    mean = math.fsum(kept) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1)) if n >= 2 else None
    return SeedStats(mean, sd, n, kept)


def standard_error(a: SeedStats, b: SeedStats) -> float | None:
    """Standard error of mean_a - mean_b; None when either side has no spread estimate."""
    if a.sd is None or b.sd is None:
        return None
    return math.sqrt(a.sd ** 2 / a.n + b.sd ** 2 / b.n)


def beyond_noise(a: SeedStats | None, b: SeedStats | None,
                 factor: float = NOISE_FACTOR) -> bool | None:
    """True when |mean_a - mean_b| exceeds `factor` standard errors; None when it cannot be
    said (a side missing or with fewer than 2 seeds). Two settings with zero spread that differ
    are beyond noise; equal means never are."""
    if a is None or b is None:
        return None
    se = standard_error(a, b)
    if se is None:
        return None
    return abs(a.mean - b.mean) > factor * se


def format_stats(stats: SeedStats | None, digits: int = 3) -> str:
    """"4.123 ± 0.012" (n ≥ 2), "4.123" (one seed), "–" (none)."""
    if stats is None:
        return "–"
    if stats.sd is None:
        return f"{stats.mean:.{digits}f}"
    return f"{stats.mean:.{digits}f} ± {stats.sd:.{digits}f}"


def verdict(a: SeedStats | None, b: SeedStats | None) -> str:
    """The "beyond seed noise?" cell: yes / no / n/a (why)."""
    marked = beyond_noise(a, b)
    if marked is None:
        return "n/a (needs ≥ 2 seeds each)"
    return "yes" if marked else "no"
