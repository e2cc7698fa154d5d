"""Decontamination step: marks kept documents that contain a benchmark text
(megatron_rrtf.data.decontaminate) as contaminated:<benchmark>."""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from megatron_rrtf.config.data import DecontaminationConfig
from megatron_rrtf.data.stages import SKIP, kept


class DecontaminateMark(PipelineStep):
    name = "decontaminate"
    type = "🔻 - FILTER"

    def __init__(self, cfg: DecontaminationConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def run(self, data: DocumentsPipeline, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        from megatron_rrtf.data.decontaminate import BenchmarkMatcher

        matcher = BenchmarkMatcher.from_config(self.cfg)
        for doc in data:
            if kept(doc):
                name = matcher.match(doc.text)
                if name is not None:
                    doc.metadata[SKIP] = f"contaminated:{name}"
                    self.stat_update(f"contaminated:{name}")
            yield doc
