"""The datatrove pipeline of `mrrtf preprocess`, as stages chained with `depends=`:

  exact_signatures  (data.tasks)      read + ingest checks -> (digest, index) into hash buckets
  exact_find        (exact buckets)   first copy per digest kept, the rest listed per task
  near_signatures   (data.tasks)      read + exact marks -> MinHash signatures  [near_dedup on]
  near_buckets      (LSH bands)       datatrove: candidate pairs per band        [near_dedup on]
  near_shingles     (data.tasks)      read + marks -> shingle hashes of the docs in candidate pairs
  near_verify       (LSH bands)       pairs kept when their exact Jaccard >= near_dedup.jaccard
  near_cluster      (1)               datatrove: clusters, all but one removed   [near_dedup on]
  write             (data.tasks)      read + marks + decontaminate -> tokenize -> parts
  merge             (1)               parts -> one .bin/.idx per source and split + manifest

Every stage writes datatrove's completion marker per task under <work>/logs/<stage>, so a rerun
after a crash redoes only the unfinished tasks. The same stages run on the local, Slurm or Ray
executor (data.executor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megatron_rrtf.config.data import DataConfig
from megatron_rrtf.data.task_plan import Unit
from megatron_rrtf.errors import ConfigError


def _executor_factory(data: DataConfig):
    if data.executor == "local":
        import multiprocessing as mp

        from datatrove.executor import LocalPipelineExecutor

        start = "fork" if "fork" in mp.get_all_start_methods() else "spawn"

        def local(pipeline, tasks, logging_dir, depends, stage):
            return LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(data.workers, tasks),
                                         logging_dir=logging_dir, depends=depends,
                                         start_method=start)
        return local
    if data.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        missing = [k for k in ("partition", "time") if k not in data.executor_options]
        if missing:
            raise ConfigError(f"data.executor=slurm needs data.executor_options.{missing[0]} "
                              "(e.g. partition: cpu, time: '04:00:00'); see docs/data.md")

        def slurm(pipeline, tasks, logging_dir, depends, stage):
            options = {"job_name": f"mrrtf-{stage}", **data.executor_options}
            return SlurmPipelineExecutor(pipeline=pipeline, tasks=tasks, logging_dir=logging_dir,
                                         depends=depends, **options)
        return slurm
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ConfigError("data.executor=ray needs ray: pip install 'megatron-rrtf[ray]'") from exc
    from datatrove.executor.ray import RayPipelineExecutor

    def ray_executor(pipeline, tasks, logging_dir, depends, stage):
        return RayPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=data.workers,
                                   logging_dir=logging_dir, depends=depends,
                                   **data.executor_options)
    return ray_executor


def build_pipeline(data: DataConfig, plan: list[list[Unit]], work: Path, tokenizer_path: str,
                   manifest: dict[str, Any], sources: list[dict[str, Any]], dtype: str,
                   benchmark_names: list[str]):
    """The last stage's executor (running it runs every stage before it)."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster

    from megatron_rrtf.data.stages.decontaminate import DecontaminateMark
    from megatron_rrtf.data.stages.exact_dedup import (
        ExactDedupFind,
        ExactDedupMark,
        ExactDedupSignature,
    )
    from megatron_rrtf.data.stages.merge import MergeParts
    from megatron_rrtf.data.stages.near_dedup import (
        CandidateShingles,
        CodeMinhashSignature,
        NearDuplicateMark,
        VerifyPairs,
        minhash_config,
    )
    from megatron_rrtf.data.stages.read import ReadDocuments
    from megatron_rrtf.data.stages.write import TokenizeAndWrite

    make = _executor_factory(data)
    tasks = len(plan)
    logs = work / "logs"
    exact, near = work / "exact", work / "near"
    executor = None

    def stage(name: str, pipeline: list, n: int) -> None:
        nonlocal executor
        executor = make(pipeline, n, str(logs / name), executor, name)

    marks: list = []
    if data.ingest.dedup:
        buckets = data.exact_dedup_buckets
        stage("exact_signatures", [ReadDocuments(data, plan),
                                   ExactDedupSignature(str(exact), buckets)], tasks)
        stage("exact_find", [ExactDedupFind(str(exact), tasks)], buckets)
        marks.append(ExactDedupMark(str(exact), buckets))
    if data.near_dedup.enabled:
        cfg = minhash_config(data.near_dedup)
        stage("near_signatures", [ReadDocuments(data, plan), *marks,
                                  CodeMinhashSignature(str(near / "signatures"),
                                                       data.near_dedup)], tasks)
        stage("near_buckets", [MinhashDedupBuckets(str(near / "signatures"),
                                                   str(near / "buckets"), config=cfg)],
              cfg.num_buckets)
        pairs = near / "buckets"
        if data.near_dedup.jaccard is not None:
            pairs = near / "verified"
            stage("near_shingles", [ReadDocuments(data, plan), *marks,
                                    CandidateShingles(str(near / "buckets"),
                                                      str(near / "shingles"), cfg.n_grams)],
                  tasks)
            stage("near_verify", [VerifyPairs(str(near / "shingles"), str(near / "buckets"),
                                              str(pairs), data.near_dedup.jaccard)],
                  cfg.num_buckets)
        stage("near_cluster", [MinhashDedupCluster(str(pairs), str(near / "remove"),
                                                   config=cfg)], 1)
        marks.append(NearDuplicateMark(str(near / "remove")))
    if data.decontaminate.enabled:
        marks.append(DecontaminateMark(data.decontaminate))
    task_sources = [sorted({u.source for u in units}) for units in plan]
    stage("write", [ReadDocuments(data, plan), *marks,
                    TokenizeAndWrite(str(work / "parts"), tokenizer_path,
                                     [s.name for s in data.sources], task_sources,
                                     data.chunk_docs, data.chunk_bytes,
                                     [f"contaminated:{b}" for b in benchmark_names])], tasks)
    stage("merge", [MergeParts(str(work / "parts"), data.output_dir, manifest, sources,
                               task_sources, dtype,
                               cleanup=[str(work / "parts"), str(exact), str(near)])], 1)
    return executor
