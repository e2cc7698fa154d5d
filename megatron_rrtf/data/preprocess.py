"""`mrrtf preprocess`: check sources, get a tokenizer (train one if asked), then per source
ingest -> tokenize in worker processes -> atomic .bin/.idx per split -> manifest.json.
A source whose outputs already match its fingerprint is skipped (resumable)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from megatron_rrtf.config import RunConfig, to_dict
from megatron_rrtf.config.data import DataConfig, SourceConfig
from megatron_rrtf.data.indexed import AtomicIndexedWriter, open_indexed, token_dtype
from megatron_rrtf.data.ingest import SPLITS, CleanDoc, IngestCounts, clean_documents
from megatron_rrtf.data.manifest import read_manifest, source_fingerprint, write_manifest
from megatron_rrtf.data.sources import check_source, iter_documents
from megatron_rrtf.data.tokenize_pool import ChunkEncoder
from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.tokenizer import Tokenizer, load_tokenizer, train_tokenizer_from_texts

log = logging.getLogger(__name__)
DIGEST_BYTES = 16


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


def _chunks(docs: Iterator[CleanDoc], max_docs: int,
            max_chars: int) -> Iterator[tuple[list[str], list[str]]]:
    """(splits, texts) work items of <= max_docs documents and about <= max_chars characters."""
    splits: list[str] = []
    texts: list[str] = []
    chars = 0
    for doc in docs:
        splits.append(doc.split)
        texts.append(doc.text)
        chars += len(doc.text)
        if len(texts) >= max_docs or chars >= max_chars:
            yield splits, texts
            splits, texts, chars = [], [], 0
    if texts:
        yield splits, texts


def _is_current(entry: dict[str, Any] | None, fingerprint: str, out: Path) -> bool:
    if not entry or entry.get("fingerprint") != fingerprint:
        return False
    if not (out / entry["hashes"]).is_file():
        return False
    try:
        for split in SPLITS:
            info = entry["splits"][split]
            open_indexed(out / info["prefix"], info)
    except (DataError, KeyError):
        return False
    return True


def _build_source(source: SourceConfig, data: DataConfig, encoder: ChunkEncoder, dtype,
                  seen: set[bytes], out: Path, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    start = time.time()
    counts = IngestCounts()
    writers = {split: AtomicIndexedWriter(out / f"{source.name}.{split}", dtype) for split in SPLITS}
    digests: list[bytes] = []
    try:
        def docs() -> Iterator[CleanDoc]:
            for doc in clean_documents(iter_documents(source), data.ingest,
                                       data.heldout_fraction, seen, counts):
                digests.append(doc.digest)
                yield doc

        with tqdm(desc=f"tokenize {source.name}", unit="doc", disable=not progress) as bar:
            for splits, (tokens, lengths) in encoder.map(_chunks(docs(), data.chunk_docs,
                                                                      data.chunk_bytes)):
                offset = 0
                for split, length in zip(splits, lengths):
                    writers[split].add(tokens[offset:offset + length])
                    offset += length
                bar.update(len(splits))
        if writers["train"].docs == 0:
            # Written (so the manifest shows why); the training stream refuses to draw from it.
            log.warning("source %s: no training documents left (read %d, skipped %s, held out "
                        "%d); fix the source or data.ingest limits before training on it",
                        source.name, counts.docs_in,
                        {k: v for k, v in counts.skipped.items() if v}, writers["heldout"].docs)
        splits_info = {}
        for split in SPLITS:
            info = writers[split].commit()
            splits_info[split] = {"prefix": f"{source.name}.{split}", **info}
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    hashes = out / f"{source.name}.hashes"
    tmp = hashes.with_name(hashes.name + ".tmp")
    tmp.write_bytes(b"".join(digests))
    tmp.replace(hashes)
    assert counts.docs_in == counts.docs_written + sum(counts.skipped.values())
    return {
        "domain": source.domain, "language": source.language, "eval_domain": source.eval_domain,
        "docs_in": counts.docs_in, "docs_written": counts.docs_written,
        "skipped": counts.skipped,
        "tokens": sum(s["tokens"] for s in splits_info.values()),
        "splits": splits_info, "hashes": hashes.name, "seconds": round(time.time() - start, 2),
    }


def preprocess(config: RunConfig, tokenizer: Tokenizer | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run ingest + tokenize for every source of config.data; returns the manifest."""
    data = config.data
    if data.builtin_corpus is not None:
        from megatron_rrtf.data.builtin_corpus import materialize_builtin_corpus

        materialize_builtin_corpus(data.builtin_corpus)
    input_digests = check_sources(data)
    if tokenizer is None:
        tokenizer = obtain_tokenizer(data, input_digests)
    out = Path(data.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out, required=False)
    manifest["tokenizer"] = {"path": str(tokenizer.path), "fingerprint": tokenizer.fingerprint,
                             "vocab_size": tokenizer.vocab_size, "eod": tokenizer.eod}
    manifest["config"] = to_dict(data)
    old_entries = manifest.get("sources", {})
    manifest["sources"] = {}
    dtype = token_dtype(tokenizer.vocab_size)
    seen: set[bytes] = set()
    previous = ""
    with ChunkEncoder(tokenizer, dtype, data.workers) as encoder:
        for source in data.sources:
            fingerprint = source_fingerprint(previous, source, data, tokenizer.fingerprint,
                                             input_digests[source.name])
            previous = fingerprint
            entry = old_entries.get(source.name)
            if _is_current(entry, fingerprint, out):
                log.info("source %s is up to date (%d tokens); skipping", source.name,
                         entry["tokens"])
                raw = (out / entry["hashes"]).read_bytes()
                seen.update(raw[i:i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES))
            else:
                entry = _build_source(source, data, encoder, dtype, seen, out, progress)
                entry["fingerprint"] = fingerprint
                skipped = {k: v for k, v in entry["skipped"].items() if v}
                log.info("source %s: %d docs in, %d written, skipped %s, %d tokens (%.1fs)",
                         source.name, entry["docs_in"], entry["docs_written"], skipped or "none",
                         entry["tokens"], entry["seconds"])
            manifest["sources"][source.name] = entry
            write_manifest(out, manifest)
    return manifest
