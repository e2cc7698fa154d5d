"""The one output type of every objective: a training sample of exactly seq_len positions, with
the documents it packs and the bidirectional prefix of prefix-LM."""

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
    doc_ids: np.ndarray
    """int32 [seq_len]: the document each input position belongs to, 0, 1, ... in order (an EOD
    belongs to the document it ends; span corruption's moved spans to theirs; trailing padding
    is a segment of its own). Used when data.document_attention is separate."""
    prefix_mask: np.ndarray
    """bool [seq_len]: prefix-LM's bidirectional prefix (each document's first tokens with
    document attention separate, the sample's first tokens with packed); False elsewhere."""
    objective: str
    """"causal" | "span" | "fim" | "prefix_lm"."""

    @property
    def prefix_len(self) -> int:
        """Positions in a bidirectional prefix (0: plain causal)."""
        return int(self.prefix_mask.sum())


def document_ids(stream: np.ndarray, eod: int) -> np.ndarray:
    """int32 [len(stream)]: 0 for the first document, +1 after every EOD (an EOD belongs to the
    document it ends)."""
    after_eod = np.concatenate(([0], np.cumsum(np.asarray(stream) == eod)[:-1]))
    return after_eod.astype(np.int32)


def sample_from_stream(stream: np.ndarray, loss_on_stream: np.ndarray, objective: str,
                       doc_of_stream: np.ndarray, prefix_of_stream: np.ndarray | None = None
                       ) -> Sample:
    """Build a Sample from a laid-out stream of seq_len + 1 tokens.

    `loss_on_stream[i]` says whether predicting stream[i] counts; stream[0] is never predicted.
    `doc_of_stream[i]` is the document of stream[i]; `prefix_of_stream[i]` whether it is in a
    bidirectional prefix (default: none)."""
    stream = np.asarray(stream, dtype=np.int64)
    prefix = (np.zeros(len(stream), dtype=bool) if prefix_of_stream is None
              else np.asarray(prefix_of_stream, dtype=bool))
    return Sample(
        tokens=stream[:-1].copy(),                                     # [s]
        labels=stream[1:].copy(),                                      # [s]
        loss_mask=np.asarray(loss_on_stream[1:], dtype=np.float32),    # [s]
        doc_ids=np.asarray(doc_of_stream[:-1], dtype=np.int32),        # [s]
        prefix_mask=prefix[:-1].copy(),                                # [s]
        objective=objective,
    )
