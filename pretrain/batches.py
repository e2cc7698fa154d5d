"""Pretraining batches: packed samples from the data stream -> objective mixture -> torch tensors,
plus the micro-batch's attention layout (model.documents), built here once on the host."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from megatron_rrtf.model.documents import DocumentAttention
from megatron_rrtf.objectives.mixture import ObjectiveMixture

Batch = dict[str, Any]


def to_model_batch(batch: dict[str, np.ndarray], separate_documents: bool) -> Batch:
    """Collated numpy arrays -> tensors on this rank's device, and "attention": the micro-batch's
    DocumentAttention (documents apart when separate_documents, i.e.
    data.document_attention=separate)."""
    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    out: Batch = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
                  for k, v in batch.items()}
    out["attention"] = DocumentAttention.build(batch["doc_ids"], batch["prefix_mask"],
                                               separate_documents, device)
    return out


class PretrainBatches:
    """BatchSource for the training loop: this rank's micro-batches, resumable by the stream."""

    def __init__(self, stream, mixture: ObjectiveMixture, micro_batch_size: int, seq_length: int,
                 separate_documents: bool = True):
        self.stream = stream
        self.separate_documents = separate_documents
        self.mixture = mixture
        self.micro_batch_size = micro_batch_size
        self.seq_length = seq_length
        self.source_names = list(stream.source_names)

    def next_microbatches(self, count: int) -> list[Batch]:
        out = []
        for _ in range(count):
            raw = self.stream.next_batch(self.micro_batch_size)
            batch = self.mixture.apply_batch(raw["tokens"], raw["epoch"], raw["sample_index"])
            batch["source_id"] = raw["source_id"]
            out.append(to_model_batch(batch, self.separate_documents))
        return out

    def counters(self, batches: list[Batch]) -> dict[str, float]:
        """Tokens consumed per source by these micro-batches (this rank's share)."""
        counts = dict.fromkeys(self.counter_names(), 0.0)
        for batch in batches:
            ids = batch["source_id"].cpu().numpy()
            for i, name in enumerate(self.source_names):
                counts[f"tokens/{name}"] += float((ids == i).sum() * self.seq_length)
        return counts

    def counter_names(self) -> list[str]:
        return [f"tokens/{name}" for name in self.source_names]

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)
