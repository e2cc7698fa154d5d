"""Read step: a task's units of the configured sources, each document checked by our ingest
rules (skip reasons as before) and the source's Stack-style filters."""

from __future__ import annotations

import hashlib

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from megatron_rrtf.config.data import DataConfig
from megatron_rrtf.data.ingest import filter_reason, heldout_by_hash, skip_reason
from megatron_rrtf.data.sources import iter_unit
from megatron_rrtf.data.stages import SKIP
from megatron_rrtf.data.task_plan import Unit


class ReadDocuments(PipelineStep):
    """Yields every document of the task's units: kept ones with text, split and digest in
    their metadata, rejected ones empty with metadata["skip"]."""

    name = "read + ingest checks"
    type = "📖 - READER"

    def __init__(self, data: DataConfig, plan: list[list[Unit]]) -> None:
        super().__init__()
        self.data = data
        self.plan = plan

    def run(self, data: DocumentsPipeline = None, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        cfg = self.data.ingest
        for unit in self.plan[rank]:
            source = self.data.sources[unit.source]
            for raw in iter_unit(source, unit.path):
                meta = {"source": unit.source}
                doc_id = raw.where
                if raw.problem is not None:
                    yield Document("", doc_id, metadata={**meta, SKIP: raw.problem})
                    continue
                reason, text = skip_reason(raw.payload, cfg)
                if reason is None:
                    reason = filter_reason(text, raw.meta, source.filters)
                if reason is not None:
                    yield Document("", doc_id, metadata={**meta, SKIP: reason})
                    continue
                digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
                split = ("heldout" if heldout_by_hash(digest, self.data.heldout_fraction)
                         else "train")
                self.stat_update("kept")
                yield Document(text, doc_id, metadata={**meta, "split": split, "digest": digest})
