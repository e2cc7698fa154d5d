"""Data section: corpora, their blend weights and where preprocessed indexed datasets live."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from megatron_rrtf.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SourceFilterConfig:
    """Filters for Stack-style records (The Stack / The Stack v2 shards: `content`, a language,
    licences, path, size). Field names are this dataset's columns; a null rule is off. Each
    filtered document is counted in manifest.json under the reason in brackets."""

    language_field: str | None = None
    """Column holding the language, e.g. "lang" (The Stack v1) or "language" (v2)."""
    languages: list[str] | None = None
    """Keep only these languages (compared case-insensitively) [language]."""
    license_field: str | None = None
    """Column holding the licence(s), a string or a list, e.g. "max_stars_repo_licenses" (v1),
    "detected_licenses" or "license_type" (v2)."""
    licenses: list[str] | None = None
    """Keep a record when one of its licences is in this list (case-insensitive) [license]."""
    size_field: str | None = None
    """Column holding the size in bytes; null: the UTF-8 length of the text."""
    max_size: int | None = None
    """Drop records larger than this many bytes [too_large]."""
    max_line_length: int | None = None
    """Drop records with a longer line; BigCode: 1000 [long_line]."""
    max_mean_line_length: float | None = None
    """Drop records whose mean line length is larger; BigCode: 100 [mean_line_length]."""
    min_alphanumeric_fraction: float | None = None
    """Drop records with a smaller share of alphanumeric characters; BigCode: 0.25
    [alphanumeric_fraction]."""

    def record_fields(self) -> list[str]:
        return [k for k in ("language_field", "license_field", "size_field")
                if getattr(self, k) is not None]

    def validate(self, key: str) -> None:
        if self.languages is not None and self.language_field is None:
            raise ConfigError(f"{key}.languages needs {key}.language_field (the column to read)")
        if self.licenses is not None and self.license_field is None:
            raise ConfigError(f"{key}.licenses needs {key}.license_field (the column to read)")
        for name in ("max_size", "max_line_length", "max_mean_line_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{key}.{name}={value} must be > 0 (or null for no limit)")
        if self.min_alphanumeric_fraction is not None and not 0 <= self.min_alphanumeric_fraction <= 1:
            raise ConfigError(f"{key}.min_alphanumeric_fraction={self.min_alphanumeric_fraction} "
                              "must be in [0, 1]")


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
    filters: SourceFilterConfig = dataclasses.field(default_factory=SourceFilterConfig)
    """Stack-style record filters (language, licence, size, line rules); all off by default."""

    @property
    def eval_domain(self) -> str:
        return f"code/{self.language}" if self.domain == "code" and self.language else self.domain

    def validate(self, key: str) -> None:
        self.filters.validate(f"{key}.filters")
        if self.filters.record_fields() and self.files is None:
            raise ConfigError(f"{key}.filters: {', '.join(self.filters.record_fields())} read "
                              "record fields, so the source needs `files` (jsonl/parquet shards)")
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
class NearDedupConfig:
    """MinHash LSH near-deduplication across all sources, one document kept per cluster.
    Defaults follow BigCode (The Stack / StarCoder): shingles are 5-grams of the tokens left
    after splitting on non-alphanumeric characters, Jaccard threshold 0.7. The banding is ours:
    42 bands x 6 rows = 252 hashes makes a pair at Jaccard 0.7 a candidate with probability
    1 - (1 - 0.7^6)^42 = 0.995, and every candidate pair is then checked by exact Jaccard."""

    enabled: bool = False
    ngram: int = 5
    """Shingle size in code tokens."""
    bands: int = 42
    """LSH bands (datatrove's num_buckets): one bucket task each."""
    rows: int = 6
    """MinHash values per band (datatrove's hashes_per_bucket)."""
    jaccard: float | None = 0.7
    """Keep an LSH candidate pair only when the exact Jaccard similarity of the two documents'
    shingle sets is >= this (BigCode's 0.7); null: every LSH candidate pair counts."""
    seed: int = 1

    @property
    def threshold(self) -> float:
        return (1 / self.bands) ** (1 / self.rows)

    def validate(self) -> None:
        if self.ngram < 1 or self.bands < 1 or self.rows < 1:
            raise ConfigError("data.near_dedup.ngram, bands and rows must be >= 1")
        if self.jaccard is not None and not 0 < self.jaccard <= 1:
            raise ConfigError(f"data.near_dedup.jaccard={self.jaccard} must be in (0, 1]")


@dataclass
class BenchmarkFileConfig:
    """A user benchmark for decontamination: JSON lines, the listed fields are the texts."""

    name: str
    path: str
    fields: list[str] = field(default_factory=lambda: ["prompt", "solution"])


@dataclass
class DecontaminationConfig:
    """Drop documents that contain a benchmark's prompt or solution (exact substring after
    collapsing whitespace, as StarCoder did); counted as contaminated:<benchmark>."""

    enabled: bool = False
    builtin: list[str] = field(default_factory=lambda: ["humaneval_infill", "humaneval"])
    """humaneval_infill: whole canonical programs (every infilling task's prefix+middle+suffix);
    humaneval: each prompt and canonical solution. A document is named after the first match."""
    files: list[BenchmarkFileConfig] = field(default_factory=list)
    min_chars: int = 50
    """Needles shorter than this (after whitespace normalisation) are not used: a one-line
    solution such as `return a + b` would match unrelated code."""

    def validate(self) -> None:
        known = ("humaneval_infill", "humaneval")
        for name in self.builtin:
            if name not in known:
                raise ConfigError(f"data.decontaminate.builtin: unknown benchmark {name!r}; "
                                  f"choose from {', '.join(known)}")
        names = list(self.builtin)
        for i, bench in enumerate(self.files):
            if not _NAME.match(bench.name) or bench.name in names:
                raise ConfigError(f"data.decontaminate.files[{i}].name={bench.name!r} must be a "
                                  "unique name of letters, digits, '_', '-', '.'")
            names.append(bench.name)
            if not bench.fields:
                raise ConfigError(f"data.decontaminate.files[{i}].fields is empty")
        if self.min_chars < 1:
            raise ConfigError("data.decontaminate.min_chars must be >= 1")


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
    """Pipeline tasks run at the same time on this machine (local executor)."""
    tasks: int | None = None
    """Tasks the read and tokenize stages are cut into (contiguous runs of input files, merged
    back in order); null: equal to workers. More tasks: finer resume, smaller task memory."""
    executor: Literal["local", "slurm", "ray"] = "local"
    """datatrove executor: local processes, Slurm jobs (sbatch) or a Ray cluster."""
    executor_options: dict[str, Any] = field(default_factory=dict)
    """Passed to datatrove's SlurmPipelineExecutor / RayPipelineExecutor (e.g. partition,
    time, cpus_per_task, mem_per_cpu_gb); see docs/data.md."""
    exact_dedup_buckets: int = 8
    """Hash buckets (one task each) for exact dedup; a bucket task holds 24 bytes per
    document of its bucket only."""
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    decontaminate: DecontaminationConfig = field(default_factory=DecontaminationConfig)
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
        if self.tasks is not None and self.tasks < 1:
            raise ConfigError(f"data.tasks={self.tasks} must be >= 1 (or null: data.workers)")
        if self.exact_dedup_buckets < 1:
            raise ConfigError("data.exact_dedup_buckets must be >= 1")
        if self.executor not in ("local", "slurm", "ray"):
            raise ConfigError(f"data.executor={self.executor!r}: choose local, slurm or ray")
        self.ingest.validate()
        self.near_dedup.validate()
        self.decontaminate.validate()
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


__all__ = ["DataConfig", "SourceConfig", "SourceFilterConfig", "IngestConfig", "NearDedupConfig",
           "DecontaminationConfig", "BenchmarkFileConfig", "TokenizerTrainConfig", "field"]
