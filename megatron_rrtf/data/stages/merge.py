"""Merge step (one task): per source and split, the tasks' parts appended in task order into
<output_dir>/<source>.<split>.bin/.idx; per-task counts summed; manifest.json written; the
parts deleted. The manifest is the last thing written, so a crash leaves no manifest that
describes half-merged files."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from megatron_rrtf.data.indexed import AtomicIndexedWriter
from megatron_rrtf.data.ingest import SPLITS
from megatron_rrtf.data.manifest import write_manifest
from megatron_rrtf.data.stages.write import part_prefix

log = logging.getLogger(__name__)


class MergeParts(PipelineStep):
    name = "merge tasks + manifest"
    type = "💽 - WRITER"

    def __init__(self, parts: str, output_dir: str, manifest: dict[str, Any],
                 sources: list[dict[str, Any]], task_sources: list[list[int]],
                 dtype: str, cleanup: list[str]) -> None:
        super().__init__()
        self.parts = Path(parts)
        self.output_dir = Path(output_dir)
        self.manifest = manifest
        self.sources = sources
        self.task_sources = task_sources
        self.dtype = dtype
        self.cleanup = cleanup

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        import numpy as np

        counts = [json.loads((self.parts / f"{r:05d}.json").read_text())
                  for r in range(len(self.task_sources))]
        entries = {}
        for s, info in enumerate(self.sources):
            name = info["name"]
            ranks = [r for r, sources in enumerate(self.task_sources) if s in sources]
            entry = {k: info[k] for k in ("domain", "language", "eval_domain", "fingerprint")}
            entry["docs_in"] = sum(counts[r][name]["docs_in"] for r in ranks)
            entry["docs_written"] = sum(counts[r][name]["docs_written"] for r in ranks)
            skipped: dict[str, int] = {}
            for r in ranks:
                for reason, n in counts[r][name]["skipped"].items():
                    skipped[reason] = skipped.get(reason, 0) + n
            entry["skipped"] = skipped
            assert entry["docs_in"] == entry["docs_written"] + sum(skipped.values())
            entry["splits"] = {}
            for split in SPLITS:
                writer = AtomicIndexedWriter(self.output_dir / f"{name}.{split}",
                                             np.dtype(self.dtype).type)
                try:
                    for r in ranks:
                        writer.append(part_prefix(self.parts, name, split, r))
                    entry["splits"][split] = {"prefix": f"{name}.{split}", **writer.commit()}
                except BaseException:
                    writer.abort()
                    raise
            entry["tokens"] = sum(v["tokens"] for v in entry["splits"].values())
            entries[name] = entry
        manifest = {**self.manifest, "sources": entries}
        write_manifest(self.output_dir, manifest)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)
