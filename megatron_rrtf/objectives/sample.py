"""The one output type of every objective: a training sample of exactly seq_len positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    tokens: np.ndarray
    """int64 [seq_len]: model input."""
    labels: np.ndarray
    """int64 [seq_len]: labels[t] is the token to predict after tokens[:t+1]."""
    loss_mask: np.ndarray
    """float32 [seq_len]: 1.0 where the loss counts."""
    prefix_len: int
    """0 except prefix-LM: positions < prefix_len attend bidirectionally among themselves."""
    objective: str
    """"causal" | "span" | "fim" | "prefix_lm"."""


def sample_from_stream(stream: np.ndarray, loss_on_stream: np.ndarray, objective: str,
                       prefix_len: int = 0) -> Sample:
    """Build a Sample from a laid-out stream of seq_len + 1 tokens.

    `loss_on_stream[i]` says whether predicting stream[i] counts; stream[0] is never predicted.
    """
    stream = np.asarray(stream, dtype=np.int64)
    return Sample(
        tokens=stream[:-1].copy(),                                     # [s]
        labels=stream[1:].copy(),                                      # [s]
        loss_mask=np.asarray(loss_on_stream[1:], dtype=np.float32),    # [s]
        prefix_len=int(prefix_len),
        objective=objective,
    )
