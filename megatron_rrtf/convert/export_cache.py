"""The one cache of Hugging Face exports of our checkpoints: `mrrtf eval`, RRTF rounds (the
student they sample from) and `mrrtf rrtf eval` all get their HF model directory from
`hf_model_dir`.

- An HF model directory (holding config.json) is used as it is; so is a CTranslate2 one
  (model.bin beside config.json), which `generation.Generator.load` serves through CTranslate2.
- Our run or step directory is exported once to RUN/eval/hf_step_XXXXXXXX (a step directory
  outside a run's checkpoints/ caches beside itself, in STEP/../eval/), and reused while it is the
  export of this very save. Its `mrrtf_export_source.json` records the save: the step
  directory's resolved path, inode and modification time. A run resumed at its last step saves
  that step again (a new directory), which makes the old export stale.
- Atomic: the export is written to a temporary sibling and swapped in by renames, under an
  exclusive lock (RUN/eval/.hf_step_X.lock), so concurrent jobs export a step once and nobody
  sees a half-written directory; an interrupted export leaves only a temporary directory, which
  the next attempt removes.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from megatron_rrtf.errors import CheckpointError, ExportError
from megatron_rrtf.publish_dir import publish_dir

SOURCE_FILE = "mrrtf_export_source.json"


def eval_dir(step_dir: Path) -> Path:
    """RUN/eval for RUN/checkpoints/step_X; STEP/../eval for a step dir elsewhere."""
    parent = step_dir.parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "eval"


def cached_export_dir(step_dir: Path) -> Path:
    """Where the HF export of `step_dir` is cached."""
    return eval_dir(step_dir) / f"hf_{step_dir.name}"


def save_fingerprint(step_dir: Path) -> dict[str, Any]:
    """What identifies one save of a step directory."""
    stat = step_dir.stat()
    return {"step_dir": str(step_dir.resolve()), "inode": stat.st_ino,
            "mtime_ns": stat.st_mtime_ns}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_export_of(hf_dir: Path, fingerprint: dict[str, Any]) -> bool:
    marker = hf_dir / SOURCE_FILE
    return marker.is_file() and json.loads(marker.read_text()) == fingerprint


def exported_step(step_dir: Path) -> Path:
    """The cached HF export of `step_dir`, made now unless the cache holds this very save."""
    from megatron_rrtf.convert.export import export_checkpoint

    hf_dir = cached_export_dir(step_dir)
    try:
        hf_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write the export cache {hf_dir.parent} ({exc.strerror}): "
                          f"export {step_dir} with `mrrtf export` to a directory you can write "
                          "and pass that") from None
    fingerprint = save_fingerprint(step_dir)
    with _locked(hf_dir.parent / f".{hf_dir.name}.lock"):
        if _is_export_of(hf_dir, fingerprint):
            return hf_dir
        tmp = hf_dir.with_name(f".{hf_dir.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        export_checkpoint(step_dir, tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(fingerprint) + "\n")
        publish_dir(tmp, hf_dir)
    return hf_dir


def hf_model_dir(checkpoint: str | Path) -> Path:
    """An HF model directory for `checkpoint`: itself when it is one, else our run or step
    directory's cached export."""
    from megatron_rrtf.checkpoint.manager import resolve_step_dir

    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: pass a run directory, a step directory "
                              "(RUN/checkpoints/step_XXXXXXXX) or a Hugging Face model directory")
    if (path / "config.json").is_file():
        return path
    try:
        step_dir = resolve_step_dir(path)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; or a Hugging Face model directory (with config.json)"
                              ) from None
    if not (step_dir / "config.yaml").is_file():
        raise CheckpointError(f"{step_dir} has no config.yaml (the run's resolved config)")
    return exported_step(step_dir)


def source_step_dir(hf_dir: Path) -> Path | None:
    """Our step directory behind an HF export (its mrrtf_export.json), if it still exists."""
    marker = hf_dir / "mrrtf_export.json"
    if not marker.is_file():
        return None
    source = Path(json.loads(marker.read_text()).get("checkpoint", ""))
    return source if (source / "config.yaml").is_file() else None
