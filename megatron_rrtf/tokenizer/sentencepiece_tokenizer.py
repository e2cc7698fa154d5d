"""Our sentencepiece models behind the Tokenizer interface."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.base import Tokenizer


class SentencePieceTokenizer(Tokenizer):
    """A `.model` file; user-defined symbols (our special tokens) are single pieces."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TokenizerError(f"tokenizer model {self.path} does not exist; train one with "
                                 "`mrrtf tokenizer train --input FILES --vocab-size N --out PREFIX`")
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.path))
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(f"{self.path} is not a sentencepiece model ({exc})") from exc

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[list[int]]:
        return self._sp.encode(texts, num_threads=-1 if threads is None else threads)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def token_to_id(self, token: str) -> int | None:
        token_id = self._sp.piece_to_id(token)
        if token_id == self._sp.unk_id() and token != self._sp.id_to_piece(token_id):
            return None
        return token_id

    def id_to_token(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def _model_files(self) -> list[Path]:
        return [self.path]
