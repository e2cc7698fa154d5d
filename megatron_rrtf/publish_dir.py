"""`publish_dir`: put a finished directory in place of another, so readers see the old one or the
new one, never a half-written one (exports, conversions, the built-in corpus)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def publish_dir(tmp: Path, dest: Path) -> Path:
    """Move the complete directory `tmp` to `dest`, replacing what is there; returns `dest`.

    Two renames (dest -> .dest.old, tmp -> dest): a crash between them leaves `dest` missing and
    `.dest.old` intact, which the next publish removes; never a mix of old and new files."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
