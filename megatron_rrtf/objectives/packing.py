"""How documents sit inside a packed sample: split at EOD, and re-fit laid-out documents into a
fixed-length stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from megatron_rrtf.errors import DataError


@dataclass(frozen=True)
class PackedDocument:
    tokens: np.ndarray
    """int64 [n]: the document's tokens inside this sample (possibly cut at the sample edges)."""
    ends_with_eod: bool
    """True when an EOD follows it in the sample (false only for the last, cut document)."""


def split_documents(raw: np.ndarray, eod: int) -> list[PackedDocument]:
    """Split a packed sample at EOD: `d0 EOD d1 EOD d2` -> [d0, d1, d2 (no EOD)]. Empty documents
    (consecutive EODs, a sample starting or ending at EOD) are kept, so the split is exact:
    joining the documents with their EODs gives `raw` back."""
    raw = np.asarray(raw, dtype=np.int64)
    cuts = np.flatnonzero(raw == eod)
    docs, start = [], 0
    for cut in cuts:
        docs.append(PackedDocument(raw[start:cut], True))
        start = int(cut) + 1
    docs.append(PackedDocument(raw[start:], False))
    return docs


def join_documents(docs: list[PackedDocument], eod: int) -> np.ndarray:
    """Inverse of split_documents."""
    parts: list[np.ndarray] = []
    for doc in docs:
        parts.append(doc.tokens)
        if doc.ends_with_eod:
            parts.append(np.array([eod], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def check_raw(raw: np.ndarray, seq_len: int) -> np.ndarray:
    """The packed sample every objective takes: 1-D, seq_len + 1 integer tokens."""
    raw = np.asarray(raw)
    if raw.ndim != 1 or raw.shape[0] != seq_len + 1:
        raise DataError(f"a packed sample must hold seq_len + 1 = {seq_len + 1} tokens, "
                         f"got shape {raw.shape}")
    if not np.issubdtype(raw.dtype, np.integer):
        raise DataError(f"a packed sample must hold integer token ids, got dtype {raw.dtype}")
    return raw.astype(np.int64, copy=False)
