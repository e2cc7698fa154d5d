"""`write_atomic`: a file written whole or not at all (checkpoint metadata, sampled chunks,
comparison records): a name unique to this process, flushed to disk, then renamed into place."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` so that readers (and other processes writing the same bytes) see
    the whole file or none of it; a crash leaves at most a hidden temporary beside it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
