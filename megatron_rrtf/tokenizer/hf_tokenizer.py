"""Any Hugging Face tokenizer directory (local files only) behind the Tokenizer interface."""

from __future__ import annotations

from pathlib import Path

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.base import Tokenizer
from megatron_rrtf.tokenizer.special_tokens import EOD

HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                      "tokenizer.model", "special_tokens_map.json", "added_tokens.json")


class HFTokenizer(Tokenizer):
    """Loaded with `transformers.AutoTokenizer.from_pretrained(dir, local_files_only=True)`."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.path = Path(path)
        try:
            self._tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot load a Hugging Face tokenizer from {self.path} ({exc}); "
                                 "it needs tokenizer.json or tokenizer_config.json") from exc
        self._vocab = self._tok.get_vocab()

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def encode(self, text: str) -> list[int]:
        # verbose=False: documents are longer than model_max_length by design; no warning
        return self._tok.encode(text, add_special_tokens=False, verbose=False)

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[list[int]]:
        return self._tok(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    @property
    def eod(self) -> int:
        """<|endoftext|> when the vocabulary has it, else the tokenizer's own EOS (e.g. </s>)."""
        token_id = self.token_to_id(EOD)
        if token_id is None and self._tok.eos_token_id is not None:
            return int(self._tok.eos_token_id)
        return super().eod

    def id_to_token(self, token_id: int) -> str:
        return self._tok.convert_ids_to_tokens(int(token_id))

    def _model_files(self) -> list[Path]:
        return [self.path / name for name in HF_TOKENIZER_FILES if (self.path / name).is_file()]
