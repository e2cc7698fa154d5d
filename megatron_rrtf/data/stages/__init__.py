"""datatrove pipeline steps of `mrrtf preprocess`, in pipeline order: read (+ ingest checks),
exact dedup, near dedup, decontaminate, tokenize+write, merge. A document that a step rejects
is not dropped but marked (metadata["skip"] = reason) so the write step counts every document
once; later steps pass marked documents through untouched."""

SKIP = "skip"
"""Document metadata key: the skip reason, absent while the document is kept."""


def kept(doc) -> bool:
    return SKIP not in doc.metadata
