"""The built-in corpus: real code and real English prose that every install already has.

- code/python: the running interpreter's standard-library `.py` files (no tests, no
  site-packages), sorted by path and taken until `code_bytes` (default ~6 MB), so the subset is
  the same on every machine with the same Python.
- nl: English prose with no download: the Python language reference topics that ship inside
  the stdlib (`pydoc_data.topics`, what `help("while")` prints) and the long descriptions
  (READMEs) in installed distributions' METADATA (torch, transformers, datasets, tqdm, ...),
  via importlib.metadata. Together ~1.3 MB; the set of distributions follows the environment
  pyproject.toml pins. Not this project's own description: it is our README, which changes from
  commit to commit, and the demo's data (hence its tokenizer and results) must not.

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
import shutil
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

CODE_BYTES = 6_000_000
MIN_DESCRIPTION_CHARS = 1500
OWN_DISTRIBUTION = "megatron-rrtf"
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
        if not name or name in seen or name == OWN_DISTRIBUTION \
                or len(text) < MIN_DESCRIPTION_CHARS:
            continue
        seen.add(name)
        safe = re.sub(r"[^a-z0-9_.-]", "_", name)
        docs.append((f"package-readmes/{safe}.md", text))
    return docs


def materialize_builtin_corpus(out_dir: str | Path, code_bytes: int = CODE_BYTES) -> Path:
    """Write code/python/** and nl/** under out_dir, skipped when it already holds exactly these
    documents (names and contents). A rewrite goes to a temporary directory swapped in whole, so
    no file of an earlier corpus (an uninstalled package's README, say) lingers in it."""
    out = Path(out_dir)
    code = [(rel, path.read_bytes()) for rel, path in stdlib_code_files(code_bytes)]
    prose = [(name, text.encode("utf-8")) for name, text in prose_documents()]
    digest = hashlib.sha256()
    for name, data in [(f"code/python/{rel}", data) for rel, data in code] + \
            [(f"nl/{name}", data) for name, data in prose]:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    listing = digest.hexdigest()
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("listing") == listing:
        log.info("built-in corpus in %s is up to date", out)
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for folder, docs in (("code/python", code), ("nl", prose)):
        for name, data in docs:
            target = tmp / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    sizes = {"code": sum(len(d) for _, d in code), "nl": sum(len(d) for _, d in prose)}
    (tmp / STAMP).write_text(json.dumps({"listing": listing, "code_files": len(code),
                                         "nl_files": len(prose), "bytes": sizes}, indent=1))
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    log.info("wrote the built-in corpus to %s: %d code files (%.1f MB), %d prose files "
             "(%.1f MB)", out, len(code), sizes["code"] / 1e6, len(prose), sizes["nl"] / 1e6)
    return out
