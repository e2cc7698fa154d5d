"""The built-in corpus: real code and real English prose that every install already has.

- code/python: the running interpreter's standard-library `.py` files (no tests, no
  site-packages), sorted by path and taken until `code_bytes` (default ~6 MB), so the subset is
  the same on every machine with the same Python.
- nl: English prose with no download: the Python language reference topics that ship inside
  the stdlib (`pydoc_data.topics`, what `help("while")` prints) and the long descriptions
  (READMEs) in installed distributions' METADATA (torch, transformers, datasets, tqdm, ...),
  via importlib.metadata. Together ~1.3 MB; the set of distributions follows the environment
  pyproject.toml pins.

`materialize_builtin_corpus(dir)` writes them as files (one document each) so that the normal
`dir` + `glob` source path reads them; configs/data/builtin.yaml points there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

CODE_BYTES = 6_000_000
MIN_DESCRIPTION_CHARS = 1500
_SKIP_PARTS = {"test", "tests", "site-packages", "dist-packages", "idle_test", "__pycache__",
               "pydoc_data"}
STAMP = "CORPUS.json"


def stdlib_code_files(code_bytes: int = CODE_BYTES) -> list[tuple[str, Path]]:
    """(relative path, file) of the stdlib .py subset, in sorted order, within the budget."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chosen, used = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_PARTS.intersection(rel.parts) or not path.is_file():
            continue
        size = path.stat().st_size
        if used + size > code_bytes:
            continue
        chosen.append((str(rel), path))
        used += size
    return chosen


def prose_documents() -> list[tuple[str, str]]:
    """(file name, text) of the English prose documents, in a fixed order."""
    docs = []
    import pydoc_data.topics

    for topic, text in sorted(pydoc_data.topics.topics.items()):
        docs.append((f"python-reference/{topic}.txt", text))
    seen = set()
    for dist in sorted(importlib.metadata.distributions(),
                       key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        text = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        if not name or name in seen or len(text) < MIN_DESCRIPTION_CHARS:
            continue
        seen.add(name)
        safe = re.sub(r"[^a-z0-9_.-]", "_", name)
        docs.append((f"package-readmes/{safe}.md", text))
    return docs


def materialize_builtin_corpus(out_dir: str | Path, code_bytes: int = CODE_BYTES) -> Path:
    """Write code/python/** and nl/** under out_dir (skipped when already written alike)."""
    out = Path(out_dir)
    code = stdlib_code_files(code_bytes)
    prose = prose_documents()
    listing = hashlib.sha256(json.dumps(
        [rel for rel, _ in code] + [name for name, _ in prose]).encode()).hexdigest()
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("listing") == listing:
        log.info("built-in corpus in %s is up to date", out)
        return out
    sizes = {"code": 0, "nl": 0}
    for rel, path in code:
        target = out / "code" / "python" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        target.write_bytes(data)
        sizes["code"] += len(data)
    for name, text in prose:
        target = out / "nl" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        sizes["nl"] += len(text.encode("utf-8"))
    tmp = stamp.with_name(STAMP + ".tmp")
    tmp.write_text(json.dumps({"listing": listing, "code_files": len(code),
                               "nl_files": len(prose), "bytes": sizes}, indent=1))
    os.replace(tmp, stamp)
    log.info("wrote the built-in corpus to %s: %d code files (%.1f MB), %d prose files "
             "(%.1f MB)", out, len(code), sizes["code"] / 1e6, len(prose), sizes["nl"] / 1e6)
    return out
