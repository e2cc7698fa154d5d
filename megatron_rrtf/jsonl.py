"""Reading JSON-lines files with errors that name the file and line (one place for every stage)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from megatron_rrtf.errors import DataError


def iter_jsonl(path: str | Path, what: str = "JSON-lines file",
               hint: str = "") -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value) for each non-blank line; DataError on a missing file or
    malformed line. `what` names the file's role in messages, `hint` says how to produce it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist" + (f": {hint}" if hint else ""))
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {n}: malformed JSON ({exc.msg})") from exc


def read_jsonl(path: str | Path, what: str = "JSON-lines file", hint: str = "") -> list[Any]:
    return [value for _, value in iter_jsonl(path, what, hint)]
