"""Blend sources by weight: which source (and its how-many-th sample) each global sample is.

Uses megatron-core's compiled greedy `build_blending_indices` (the one BlendedDataset uses):
sample g goes to the source whose count lags its weight most. The rule never looks at the total
size, so the sequence is prefix-stable: growing it leaves earlier samples unchanged, and resume
needs only the number of samples consumed.
"""

from __future__ import annotations

import numpy as np


def blend_indices(weights: list[float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(source id per global sample [int16], that source's running sample count [int64])."""
    from megatron.core.datasets import helpers_cpp

    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"blend weights {weights} must be >= 0 with a positive sum")
    w = w / w.sum()
    source = np.zeros(size, dtype=np.int16)
    source_sample = np.zeros(size, dtype=np.int64)
    helpers_cpp.build_blending_indices(source, source_sample, w, len(w), size, False)
    return source, source_sample


def effective_epochs(weights: list[float], samples_per_epoch: list[int],
                     num_samples: int) -> list[float]:
    """Passes over each source that `num_samples` blended samples make (0 for weight 0)."""
    source, _ = blend_indices(weights, num_samples)
    counts = np.bincount(source, minlength=len(weights))
    return [float(c) / n if n else 0.0 for c, n in zip(counts, samples_per_epoch)]
