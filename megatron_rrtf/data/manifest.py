"""manifest.json: what preprocessing wrote per source (counts, files, fingerprints), written
atomically after each source so an interrupted run resumes where it stopped."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from megatron_rrtf.config.data import DataConfig, SourceConfig
from megatron_rrtf.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def manifest_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / MANIFEST


def read_manifest(output_dir: str | Path, required: bool = True) -> dict[str, Any]:
    path = manifest_path(output_dir)
    if not path.is_file():
        if required:
            raise DataError(f"{path} does not exist: run `mrrtf preprocess CONFIG` first "
                            "(data.output_dir must match)")
        return {"format": FORMAT_VERSION, "sources": {}}
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); delete it and rerun `mrrtf "
                        "preprocess`") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise DataError(f"{path} has format {manifest.get('format')}, expected {FORMAT_VERSION}; "
                        "rerun `mrrtf preprocess`")
    return manifest


def write_manifest(output_dir: str | Path, manifest: dict[str, Any]) -> None:
    path = manifest_path(output_dir)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def source_fingerprint(previous: str, source: SourceConfig, data: DataConfig,
                       tokenizer_fingerprint: str, input_digest: str) -> str:
    """Everything a source's output depends on: its origin (not its weight), the ingest rules,
    the split fraction, the tokenizer, its input files' stat, and the previous source's
    fingerprint (dedup carries hashes from earlier sources)."""
    origin = {k: v for k, v in dataclasses.asdict(source).items() if k != "weight"}
    payload = {"format": FORMAT_VERSION, "previous": previous, "source": origin,
               "ingest": dataclasses.asdict(data.ingest), "heldout": data.heldout_fraction,
               "tokenizer": tokenizer_fingerprint, "inputs": input_digest}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
