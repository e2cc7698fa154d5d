"""Ingest: decode, skip bad documents (counted by reason), drop exact duplicates, and assign
each kept document to the train or held-out split by its content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from megatron_rrtf.config.data import IngestConfig, SourceFilterConfig
from megatron_rrtf.data.sources import RawDoc
from megatron_rrtf.tokenizer.special_tokens import special_tokens

_SPECIAL = tuple(special_tokens())

SKIP_REASONS = ("invalid_utf8", "binary", "empty", "too_large", "long_line", "malformed_json",
                "missing_field", "special_token", "language", "license", "mean_line_length",
                "alphanumeric_fraction", "duplicate", "near_duplicate")
"""Every reason a document is not written; manifest.json counts each per source, and
`contaminated:<benchmark>` per benchmark when data.decontaminate is on."""
SPLITS = ("train", "heldout")


@dataclass
class IngestCounts:
    """docs_in == docs_written + sum(skipped.values()) always holds."""

    docs_in: int = 0
    docs_written: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1


@dataclass
class CleanDoc:
    text: str
    split: str
    digest: bytes


def skip_reason(payload: bytes | str, cfg: IngestConfig) -> tuple[str | None, str | None]:
    """(reason, None) for a document to skip, else (None, text)."""
    if isinstance(payload, bytes):
        if len(payload) > cfg.max_doc_bytes:
            return "too_large", None
        if b"\0" in payload:
            return "binary", None
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_utf8", None
    else:
        text = payload
        if len(text) * 4 > cfg.max_doc_bytes and len(text.encode("utf-8", "surrogatepass")) > cfg.max_doc_bytes:
            return "too_large", None
        if "\0" in text:
            return "binary", None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from a lenient upstream decoder
            return "invalid_utf8", None
    if not text.strip():
        return "empty", None
    if len(text) > cfg.max_line_length and max(map(len, text.splitlines())) > cfg.max_line_length:
        return "long_line", None
    if "<" in text and any(token in text for token in _SPECIAL):
        # the tokenizer would turn e.g. a literal "<|endoftext|>" into a false document end
        return "special_token", None
    return None, text


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def filter_reason(text: str, meta: dict | None, rules: SourceFilterConfig) -> str | None:
    """The Stack-style rule `text` (with its record columns `meta`) breaks, else None."""
    if rules.languages is not None:
        language = str(meta.get(rules.language_field) or "").lower()
        if language not in {lang.lower() for lang in rules.languages}:
            return "language"
    if rules.licenses is not None:
        allowed = {lic.lower() for lic in rules.licenses}
        if not any(lic.lower() in allowed for lic in _as_list(meta.get(rules.license_field))):
            return "license"
    if rules.max_size is not None:
        size = meta.get(rules.size_field) if rules.size_field else None
        if size is None:
            size = len(text.encode("utf-8"))
        if size > rules.max_size:
            return "too_large"
    if rules.max_line_length is not None or rules.max_mean_line_length is not None:
        lengths = [len(line) for line in text.splitlines()] or [0]
        if rules.max_line_length is not None and max(lengths) > rules.max_line_length:
            return "long_line"
        if (rules.max_mean_line_length is not None
                and sum(lengths) / len(lengths) > rules.max_mean_line_length):
            return "mean_line_length"
    if rules.min_alphanumeric_fraction is not None:
        alnum = sum(c.isalnum() for c in text)
        if alnum < rules.min_alphanumeric_fraction * len(text):
            return "alphanumeric_fraction"
    return None


def heldout_by_hash(digest: bytes, heldout_fraction: float) -> bool:
    """Deterministic split: the first 8 bytes of the content hash as a fraction of 2**64."""
    return int.from_bytes(digest[:8], "big") < heldout_fraction * 2**64


def clean_documents(docs: Iterator[RawDoc], cfg: IngestConfig, heldout_fraction: float,
                    seen: set[bytes], counts: IngestCounts) -> Iterator[CleanDoc]:
    """Filter `docs`, updating `counts` and the cross-source dedup set `seen` as it goes."""
    for doc in docs:
        counts.docs_in += 1
        if doc.problem is not None:
            counts.skip(doc.problem)
            continue
        reason, text = skip_reason(doc.payload, cfg)
        if reason is not None:
            counts.skip(reason)
            continue
        digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
        if cfg.dedup:
            if digest in seen:
                counts.skip("duplicate")
                continue
            seen.add(digest)
        counts.docs_written += 1
        split = "heldout" if heldout_by_hash(digest, heldout_fraction) else "train"
        yield CleanDoc(text, split, digest)
