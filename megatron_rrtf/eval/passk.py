"""pass@k: the unbiased estimator of Chen et al. (2021), pure functions.

For one problem with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance
that at least one of k samples drawn without replacement from the n passes. Computed as the
product 1 - prod_{i=n-c+1}^{n} (1 - k / i), which never forms the huge binomials.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from megatron_rrtf.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with `n` samples, `c` of them correct."""
    if not 0 <= c <= n:
        raise ConfigError(f"pass@k needs 0 <= correct <= samples, got correct={c}, samples={n}")
    if not 1 <= k <= n:
        raise ConfigError(f"pass@{k} needs 1 <= k <= samples per problem, got samples={n}: "
                          f"sample at least {k} completions per problem or drop k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems; `counts` holds (samples, correct) per problem."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ConfigError("pass@k of zero problems is undefined")
    return float(np.mean(values))
