"""`mrrtf preprocess`: check sources, get a tokenizer (train one if asked), then run the datatrove
pipeline (megatron_rrtf.data.pipeline: read + ingest checks -> exact dedup -> near dedup ->
decontaminate -> tokenize -> .bin/.idx per task -> merged per source and split -> manifest.json).
Outputs that already match the fingerprint are kept; an interrupted run resumes per task."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from megatron_rrtf.config import RunConfig, to_dict
from megatron_rrtf.config.data import DataConfig
from megatron_rrtf.data.indexed import open_indexed, token_dtype
from megatron_rrtf.data.ingest import SPLITS, IngestCounts, clean_documents
from megatron_rrtf.data.manifest import FORMAT_VERSION, read_manifest, source_fingerprint
from megatron_rrtf.data.sources import check_source, iter_documents
from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.tokenizer import Tokenizer, load_tokenizer, train_tokenizer_from_texts

log = logging.getLogger(__name__)


def tokenizer_path(data: DataConfig) -> Path:
    """Where the tokenizer is: data.tokenizer, else where preprocess trains one."""
    if data.tokenizer is not None:
        return Path(data.tokenizer)
    if data.train_tokenizer is None:
        raise ConfigError("data.tokenizer is null and data.train_tokenizer is not set: give a "
                          "tokenizer path or a train_tokenizer section")
    prefix = data.train_tokenizer.out or str(Path(data.output_dir) / "tokenizer")
    return Path(prefix + ".model")


def check_sources(data: DataConfig) -> dict[str, str]:
    """Every source's input problems, raised before any work; returns input digests by name."""
    if not data.sources:
        raise ConfigError("data.sources is empty: list at least one source (see "
                          "configs/data/builtin.yaml)")
    return {s.name: check_source(s, f"data.sources[{i}]") for i, s in enumerate(data.sources)}


def _training_texts(data: DataConfig) -> Iterator[str]:
    """Train-split documents, an even byte budget per source, for tokenizer training."""
    budget = data.train_tokenizer.max_input_bytes // len(data.sources)
    for source in data.sources:
        used, seen = 0, set()
        for doc in clean_documents(iter_documents(source), data.ingest, data.heldout_fraction,
                                   seen, IngestCounts()):
            if doc.split != "train":
                continue
            used += len(doc.text)
            if used > budget:
                break
            yield doc.text


def obtain_tokenizer(data: DataConfig, input_digests: dict[str, str]) -> Tokenizer:
    """Load data.tokenizer, or train one from the sources unless the one already trained
    came from the same settings and inputs (recorded beside it in <prefix>.train.json)."""
    path = tokenizer_path(data)
    if data.tokenizer is None:
        recipe = {"train_tokenizer": to_dict(data.train_tokenizer), "inputs": input_digests,
                  "sources": [{k: v for k, v in to_dict(s).items() if k != "weight"}
                              for s in data.sources],
                  "ingest": to_dict(data.ingest),
                  "heldout_fraction": data.heldout_fraction}
        recipe_path = path.with_suffix(".train.json")
        current = (path.is_file() and recipe_path.is_file()
                   and json.loads(recipe_path.read_text()) == recipe)
        if current:
            log.info("tokenizer %s is up to date", path)
        else:
            log.info("training a %d-piece tokenizer into %s", data.train_tokenizer.vocab_size,
                     path)
            train_tokenizer_from_texts(_training_texts(data), data.train_tokenizer.vocab_size,
                                       path.with_suffix(""), num_threads=data.workers)
            recipe_path.write_text(json.dumps(recipe, indent=1))
    return load_tokenizer(path)


def _benchmark_stats(data: DataConfig) -> list[str]:
    """Name, size and mtime of each user benchmark file (a change means re-preprocess)."""
    out = []
    for bench in data.decontaminate.files:
        path = Path(bench.path)
        if not path.is_file():
            raise DataError(f"data.decontaminate.files: {path} ({bench.name}) does not exist")
        st = path.stat()
        out.append(f"{bench.name}\0{path}\0{st.st_size}\0{st.st_mtime_ns}")
    return out


def run_fingerprint(data: DataConfig, tokenizer: Tokenizer,
                    input_digests: dict[str, str]) -> str:
    """Everything the outputs depend on: each source's fingerprint (origin, ingest rules, split,
    tokenizer, inputs; chained, as before), near-dedup and decontamination settings. Dedup works
    across sources, so every source's entry carries this one fingerprint."""
    previous = ""
    for source in data.sources:
        previous = source_fingerprint(previous, source, data, tokenizer.fingerprint,
                                      input_digests[source.name])
    payload = {"sources": previous, "near_dedup": to_dict(data.near_dedup),
               "decontaminate": to_dict(data.decontaminate) if data.decontaminate.enabled
               else None, "benchmarks": _benchmark_stats(data)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _is_current(manifest: dict[str, Any], data: DataConfig, fingerprint: str, out: Path) -> bool:
    entries = manifest.get("sources", {})
    if list(entries) != [s.name for s in data.sources]:
        return False
    try:
        for entry in entries.values():
            if entry.get("fingerprint") != fingerprint:
                return False
            for split in SPLITS:
                info = entry["splits"][split]
                open_indexed(out / info["prefix"], info)
    except (DataError, KeyError):
        return False
    return True


def preprocess(config: RunConfig, tokenizer: Tokenizer | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run the datatrove pipeline (megatron_rrtf.data.pipeline) for every source of
    config.data; returns the manifest (for data.executor=slurm: {"submitted": ...} once the
    jobs are queued; the merge job writes manifest.json)."""
    from megatron_rrtf.data.pipeline import build_pipeline
    from megatron_rrtf.data.task_plan import plan_tasks

    data = config.data
    if data.builtin_corpus is not None:
        from megatron_rrtf.data.builtin_corpus import materialize_builtin_corpus

        materialize_builtin_corpus(data.builtin_corpus)
    input_digests = check_sources(data)
    benchmark_names = list(data.decontaminate.builtin) + [b.name for b in data.decontaminate.files]
    if not data.decontaminate.enabled:
        benchmark_names = []
    if tokenizer is None:
        tokenizer = obtain_tokenizer(data, input_digests)
    out = Path(data.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = run_fingerprint(data, tokenizer, input_digests)
    old = read_manifest(out, required=False)
    if _is_current(old, data, fingerprint, out):
        log.info("%s is up to date (%d tokens); nothing to do", out / "manifest.json",
                 sum(e["tokens"] for e in old["sources"].values()))
        return old
    start = time.time()
    plan = plan_tasks(data, data.tasks or data.workers)
    layout = {"fingerprint": fingerprint, "tasks": len(plan),
              "exact_buckets": data.exact_dedup_buckets, "near": to_dict(data.near_dedup)}
    work = out / ".pipeline" / hashlib.sha256(
        json.dumps(layout, sort_keys=True).encode()).hexdigest()[:16]
    if (work / "logs" / "merge" / "completions").is_dir():
        shutil.rmtree(work)  # finished before, yet the outputs are gone or damaged: redo all
    manifest = {"format": FORMAT_VERSION,
                "tokenizer": {"path": str(tokenizer.path), "fingerprint": tokenizer.fingerprint,
                              "vocab_size": tokenizer.vocab_size, "eod": tokenizer.eod},
                "config": to_dict(data), "pipeline": str(work)}
    sources = [{"name": s.name, "domain": s.domain, "language": s.language,
                "eval_domain": s.eval_domain, "fingerprint": fingerprint} for s in data.sources]
    dtype = np.dtype(token_dtype(tokenizer.vocab_size)).name
    executor = build_pipeline(data, plan, work, str(tokenizer.path), manifest, sources, dtype,
                              benchmark_names)
    # imported once here, not in every forked task (megatron.core's import takes seconds)
    import megatron.core.datasets.indexed_dataset  # noqa: F401

    executor.run()
    if data.executor == "slurm":
        log.info("Slurm jobs queued (logs under %s); the merge job writes %s", work / "logs",
                 out / "manifest.json")
        return {"submitted": str(work / "logs"), "sources": {}}
    manifest = read_manifest(out)
    seconds = round(time.time() - start, 2)
    for name, entry in manifest["sources"].items():
        skipped = {k: v for k, v in entry["skipped"].items() if v}
        log.info("source %s: %d docs in, %d written, skipped %s, %d tokens", name,
                 entry["docs_in"], entry["docs_written"], skipped or "none", entry["tokens"])
        if entry["splits"]["train"]["docs"] == 0:
            # written (so the manifest shows why); the training stream refuses to draw from it
            log.warning("source %s: no training documents left (read %d, skipped %s, held out "
                        "%d); fix the source or data.ingest limits before training on it", name,
                        entry["docs_in"], skipped, entry["splits"]["heldout"]["docs"])
    log.info("preprocessed %d sources in %.1fs (%d tasks)", len(manifest["sources"]), seconds,
             len(plan))
    return manifest
