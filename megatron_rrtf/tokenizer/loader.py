"""`load_tokenizer(path)`: pick the implementation from what lies at the path."""

from __future__ import annotations

from pathlib import Path

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.base import Tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A `.model` file -> sentencepiece; a directory with tokenizer.json or
    tokenizer_config.json -> Hugging Face AutoTokenizer (local files only)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".model":
        from megatron_rrtf.tokenizer.sentencepiece_tokenizer import SentencePieceTokenizer

        return SentencePieceTokenizer(path)
    if path.is_dir() and any((path / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
        from megatron_rrtf.tokenizer.hf_tokenizer import HFTokenizer

        return HFTokenizer(path)
    if not path.exists():
        raise TokenizerError(f"tokenizer {path} does not exist; set data.tokenizer to a .model file "
                             "or a Hugging Face tokenizer directory, or train one with "
                             "`mrrtf tokenizer train`")
    raise TokenizerError(f"tokenizer {path} is neither a sentencepiece .model file nor a directory "
                         "holding tokenizer.json / tokenizer_config.json")
