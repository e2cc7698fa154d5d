"""Data pipeline: ingest raw corpora, tokenize them into megatron-core indexed datasets, and
stream blended, packed, resumable training samples (see docs/data.md)."""
