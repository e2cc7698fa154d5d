"""Exact dedup without an all-documents set in one process, in three steps like datatrove's
MinHash stages: each read task writes (content digest, index) records into hash buckets; one task
per bucket sorts its bucket across read tasks and keeps the first copy (lowest task, then lowest
index: the order of the sources, as before); each tokenize task marks its own removed indices.
The index counts the documents that passed the ingest checks, in reading order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from megatron_rrtf.data.stages import SKIP, kept

RECORD = np.dtype([("hi", ">u8"), ("lo", ">u8"), ("rank", "<u4"), ("index", "<u4")])


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class ExactDedupSignature(PipelineStep):
    """Sink: bucket_<b>/<rank>.npy with the (digest, rank, index) records of kept documents."""

    name = "exact dedup 1: signatures"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, buckets: int) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.buckets = buckets

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        rows: list[list[tuple[bytes, int]]] = [[] for _ in range(self.buckets)]
        index = 0
        for doc in data:
            if not kept(doc):
                continue
            digest = doc.metadata["digest"]
            rows[int.from_bytes(digest[:8], "big") % self.buckets].append((digest, index))
            index += 1
        for b, bucket in enumerate(rows):
            records = np.zeros(len(bucket), dtype=RECORD)
            if bucket:
                raw = np.frombuffer(b"".join(d for d, _ in bucket), dtype=">u8").reshape(-1, 2)
                records["hi"], records["lo"] = raw[:, 0], raw[:, 1]
                records["rank"] = rank
                records["index"] = [i for _, i in bucket]
            _save(self.folder / f"bucket_{b:03d}" / f"{rank:05d}.npy", records)


class ExactDedupFind(PipelineStep):
    """One task per bucket: removed/<rank>/bucket_<b>.npy, the indices each read task drops."""

    name = "exact dedup 2: find copies"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, read_tasks: int) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.read_tasks = read_tasks

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        bucket = rank
        parts = [np.load(self.folder / f"bucket_{bucket:03d}" / f"{r:05d}.npy")
                 for r in range(self.read_tasks)]
        records = np.concatenate(parts) if parts else np.zeros(0, dtype=RECORD)
        order = np.lexsort((records["index"], records["rank"], records["lo"], records["hi"]))
        records = records[order]
        copy = np.zeros(len(records), dtype=bool)
        if len(records) > 1:
            copy[1:] = (records["hi"][1:] == records["hi"][:-1]) & (
                records["lo"][1:] == records["lo"][:-1])
        self.stat_update("duplicates", value=int(copy.sum()))
        removed = records[copy]
        for r in range(self.read_tasks):
            indices = np.sort(removed["index"][removed["rank"] == r]).astype(np.uint32)
            _save(self.folder / "removed" / f"{r:05d}" / f"bucket_{bucket:03d}.npy", indices)


class ExactDedupMark(PipelineStep):
    """Marks this task's removed documents as duplicate (same index count as the signature)."""

    name = "exact dedup 3: mark"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, buckets: int) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.buckets = buckets

    def run(self, data: DocumentsPipeline, rank: int = 0,
            world_size: int = 1) -> DocumentsPipeline:
        removed = set()
        for b in range(self.buckets):
            removed.update(np.load(self.folder / "removed" / f"{rank:05d}" /
                                   f"bucket_{b:03d}.npy").tolist())
        index = 0
        for doc in data:
            if kept(doc):
                if index in removed:
                    doc.metadata[SKIP] = "duplicate"
                index += 1
            yield doc
