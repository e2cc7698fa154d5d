"""Data section: corpora, their blend weights and where preprocessed indexed datasets live."""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_rrtf.errors import ConfigError


@dataclass
class DataConfig:
    tokenizer: str | None = None
    """Path to a sentencepiece .model (ours) or a Hugging Face tokenizer directory."""
    output_dir: str = "data/preprocessed"

    def validate(self) -> None:
        if not self.output_dir:
            raise ConfigError("data.output_dir must be a non-empty path")


__all__ = ["DataConfig", "field"]
