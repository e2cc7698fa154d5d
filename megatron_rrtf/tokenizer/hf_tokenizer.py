"""Any Hugging Face tokenizer directory (local files only) behind the Tokenizer interface.

Our special tokens are looked up by our names, or by the tokenizer's own names for them where
`mrrtf import` recorded such aliases in mrrtf_special_tokens.json (e.g. SantaCoder's
<fim-prefix> for our <fim_prefix>; see megatron_rrtf.convert.token_extension).
"""

from __future__ import annotations

import json
from pathlib import Path

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.base import Tokenizer
from megatron_rrtf.tokenizer.special_tokens import EOD

SPECIAL_TOKEN_MAP = "mrrtf_special_tokens.json"
"""Written by `mrrtf import` into the tokenizer directory: {"aliases", "existing", "added",
"old_size", "new_size"}; "aliases" maps our token name -> the tokenizer's own token."""
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                      "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
                      SPECIAL_TOKEN_MAP)


def read_aliases(tokenizer_dir: str | Path) -> dict[str, str]:
    """Our token name -> the tokenizer's own token, from SPECIAL_TOKEN_MAP (empty without it)."""
    path = Path(tokenizer_dir) / SPECIAL_TOKEN_MAP
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("aliases", {}))


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
        self._aliases = read_aliases(self.path)

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
        return self._vocab.get(self._aliases.get(token, token))

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
