"""Embedding rows: megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by;
Hugging Face checkpoints keep the real vocabulary size (the rows a tokenizer can produce)."""

from __future__ import annotations

import torch

from megatron_rrtf.errors import ExportError


def unpad_rows(table: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The first `vocab_size` rows (padding rows are never produced by the tokenizer)."""
    if table.shape[0] < vocab_size:
        raise ExportError(f"embedding has {table.shape[0]} rows, fewer than the vocabulary "
                          f"({vocab_size}); model.vocab_size does not match the checkpoint")
    return table[:vocab_size].clone()


def pad_rows(table: torch.Tensor, padded_size: int) -> torch.Tensor:
    """Append zero rows up to `padded_size` (megatron's padded embedding/output table)."""
    extra = padded_size - table.shape[0]
    if extra < 0:
        raise ExportError(f"embedding has {table.shape[0]} rows, more than the padded "
                          f"vocabulary {padded_size}")
    return torch.cat([table, table.new_zeros(extra, *table.shape[1:])])
