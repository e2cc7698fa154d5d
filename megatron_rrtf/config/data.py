"""Data section: corpora, their blend weights and where preprocessed indexed datasets live."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from megatron_rrtf.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SourceConfig:
    """One corpus. Exactly one origin: `dir` (+ `glob`), `files`, or `hf_disk`."""

    name: str
    """Unique, file-name safe; names the .bin/.idx files and the manifest entry."""
    domain: Literal["nl", "code"]
    language: str | None = None
    """For code: e.g. python. Held-out evaluation is grouped per domain ("nl", "code/python")."""
    weight: float = 1.0
    """Relative share of training samples drawn from this source (normalised over sources)."""
    train_fraction: float = 1.0
    """Share of the training split's tokens used: whole documents in a fixed seeded order (the
    same for every data.seed and run) until the share is reached, so that e.g. four passes over
    a quarter can be compared with one pass over the whole at equal tokens. Like `weight`,
    changing it needs no new preprocessing."""
    dir: str | None = None
    """A directory of files, one document each, selected by `glob`."""
    glob: str = "**/*"
    files: list[str] | None = None
    """JSON-lines (.jsonl/.json), parquet (.parquet) or text (.txt: one document per file) files."""
    field: str = "text"
    """The record field holding the document text (jsonl, parquet, hf_disk)."""
    hf_disk: str | None = None
    """A Hugging Face dataset saved with `save_to_disk` (a Dataset or a DatasetDict's train split)."""

    @property
    def eval_domain(self) -> str:
        return f"code/{self.language}" if self.domain == "code" and self.language else self.domain

    def validate(self, key: str) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"{key}.name={self.name!r} must be letters, digits, '_', '-', '.'")
        origins = [o for o in ("dir", "files", "hf_disk") if getattr(self, o) is not None]
        if len(origins) != 1:
            raise ConfigError(f"{key} ({self.name}) needs exactly one of dir, files, hf_disk; "
                              f"got {', '.join(origins) or 'none'}")
        if self.files is not None and not self.files:
            raise ConfigError(f"{key}.files is empty; list at least one file")
        if self.weight < 0:
            raise ConfigError(f"{key}.weight={self.weight} must be >= 0")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"{key}.train_fraction={self.train_fraction} must be in (0, 1]")
        if not self.field:
            raise ConfigError(f"{key}.field must be a non-empty field name")


@dataclass
class IngestConfig:
    """Which documents are skipped (each counted by reason in manifest.json)."""

    max_doc_bytes: int = 1_000_000
    """Larger documents are skipped as too_large."""
    max_line_length: int = 1000
    """A document with a longer line (minified / generated code) is skipped as long_line."""
    dedup: bool = True
    """Skip exact duplicates (sha256 of the text) across all sources."""

    def validate(self) -> None:
        if self.max_doc_bytes < 1 or self.max_line_length < 1:
            raise ConfigError("data.ingest.max_doc_bytes and data.ingest.max_line_length must be >= 1")


@dataclass
class TokenizerTrainConfig:
    """How `mrrtf preprocess` trains a tokenizer when data.tokenizer is null."""

    vocab_size: int = 8000
    max_input_bytes: int = 20_000_000
    """Train on at most this many bytes of the sources' training documents (split evenly)."""
    out: str | None = None
    """Model prefix; null: <output_dir>/tokenizer (-> tokenizer.model)."""

    def validate(self) -> None:
        if self.vocab_size < 2 or self.max_input_bytes < 1:
            raise ConfigError("data.train_tokenizer.vocab_size and max_input_bytes must be positive")


@dataclass
class DataConfig:
    tokenizer: str | None = None
    """Path to a sentencepiece .model (ours) or a Hugging Face tokenizer directory. null with
    train_tokenizer set: `mrrtf preprocess` trains one into the output directory."""
    output_dir: str = "data/preprocessed"
    sources: list[SourceConfig] = field(default_factory=list)
    heldout_fraction: float = 0.05
    """Share of documents held out for evaluation, chosen by the document's content hash."""
    seed: int = 1234
    """Seeds the per-(source, epoch) document and sample shuffles."""
    workers: int = 2
    """Tokenizer worker processes in preprocessing."""
    chunk_docs: int = 256
    """At most this many documents per tokenizer work item ..."""
    chunk_bytes: int = 131072
    """... and at most about this many characters (small items keep the workers evenly busy)."""
    ingest: IngestConfig = field(default_factory=IngestConfig)
    train_tokenizer: TokenizerTrainConfig | None = None
    builtin_corpus: str | None = None
    """A directory: `mrrtf preprocess` first writes the built-in corpus there (stdlib code +
    installed packages' descriptions as prose) so sources can point into it."""
    document_attention: Literal["separate", "packed"] = "separate"
    """separate: a token of a packed sample attends only within its own document, positions
    restart at 0 per document and prefix-LM draws a prefix per document (Megatron-LM's
    --reset-attention-mask --reset-position-ids); packed: every token attends causally to the
    whole sample, one position range and one prefix per sample (the comparison setting)."""

    def validate(self) -> None:
        if not self.output_dir:
            raise ConfigError("data.output_dir must be a non-empty path")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError(f"data.heldout_fraction={self.heldout_fraction} must be in [0, 1)")
        if self.workers < 1 or self.chunk_docs < 1 or self.chunk_bytes < 1:
            raise ConfigError("data.workers, data.chunk_docs and data.chunk_bytes must be >= 1")
        self.ingest.validate()
        if self.train_tokenizer is not None:
            self.train_tokenizer.validate()
        names = set()
        for i, source in enumerate(self.sources):
            source.validate(f"data.sources[{i}]")
            if source.name in names:
                raise ConfigError(f"data.sources[{i}].name={source.name!r} is used twice; "
                                  "names must be unique")
            names.add(source.name)
        if self.sources and sum(s.weight for s in self.sources) <= 0:
            raise ConfigError("data.sources: at least one source needs weight > 0")


__all__ = ["DataConfig", "SourceConfig", "IngestConfig", "TokenizerTrainConfig", "field"]
