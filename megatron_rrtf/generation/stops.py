"""Where a completion ends: the first stop string in its text, the first stop id in its tokens.
Pure (no torch), so code extraction (rrtf.extract) uses the same rule without the model stack."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` before the earliest occurrence of any stop string (all of it when none occurs)."""
    cut = len(text)
    for marker in stop:
        if marker:
            at = text.find(marker)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


def cut_at_stop_ids(ids: Sequence[int], stop_ids: set[int]) -> list[int]:
    """Token ids up to (not including) the first stop id."""
    out = []
    for token in ids:
        if token in stop_ids:
            break
        out.append(int(token))
    return out
