"""The one tokenizer interface every stage uses, whatever library sits behind it."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.special_tokens import (
    EOD,
    EOM,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    NUM_MASK_SENTINELS,
    PAD,
    SEP,
    SpecialTokenIds,
    mask_token,
)


def sha256_files(paths: list[Path]) -> str:
    """sha256 over the bytes of `paths` in order (the tokenizer's fingerprint)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Tokenizer(ABC):
    """encode/decode text without adding BOS/EOS, plus the special ids the objectives need.

    Also carries what megatron-core's dataset code asks of a tokenizer (`eod`, `pad`,
    `unique_identifiers`). Subclasses pickle as their path and reload in the worker.
    """

    path: Path

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no BOS/EOS is added."""

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[list[int]]:
        """Token ids of several texts (subclasses batch this in native code; `threads` caps
        the native threads where the library has them, None = its default)."""
        return [self.encode(t) for t in texts]

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of `ids`; decode(encode(x)) == x for our sentencepiece models."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (the model's embedding rows before padding)."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """Id of the vocabulary entry `token`, or None when it is not a single entry."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """Vocabulary entry of `token_id`."""

    @abstractmethod
    def _model_files(self) -> list[Path]:
        """Files whose bytes define this tokenizer (for the fingerprint)."""

    @property
    def fingerprint(self) -> str:
        """sha256 of the model file(s): preprocessed data records it and checks it on reuse."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = sha256_files(self._model_files())
        return self._fingerprint

    @property
    def unique_identifiers(self) -> dict[str, str]:
        """What megatron-core's dataset builder hashes to name its index caches."""
        return {"class": type(self).__name__, "path": str(self.path),
                "fingerprint": self.fingerprint}

    @property
    def eod(self) -> int:
        """End-of-document id, appended to every document; required of every tokenizer."""
        token_id = self.token_to_id(EOD)
        if token_id is None:
            raise TokenizerError(f"tokenizer {self.path} has no {EOD} token (needed as end of "
                                 "document); train one with `mrrtf tokenizer train` or add it")
        return token_id

    @property
    def pad(self) -> int:
        """Padding id: <pad> when present, else EOD (padding is never in the loss)."""
        token_id = self.token_to_id(PAD)
        return self.eod if token_id is None else token_id

    @property
    def special_ids(self) -> SpecialTokenIds:
        """Every special token's id; raises TokenizerError naming the tokens this one lacks.

        Lazy on purpose: plain causal LM needs only `eod`, so a tokenizer without <sep> or
        <mask_k> (e.g. StarCoder's) works until an objective asks for these.
        """
        names = [EOD, PAD, SEP, EOM, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD] + [
            mask_token(i) for i in range(1, NUM_MASK_SENTINELS + 1)]
        ids = {name: self.token_to_id(name) for name in names}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(
                f"tokenizer {self.path} lacks the special tokens {', '.join(missing)} that span "
                "corruption / FIM objectives need; use objectives.rates with causal only, or a "
                "tokenizer trained by `mrrtf tokenizer train` (it has them all)")
        return SpecialTokenIds(
            eod=ids[EOD], pad=ids[PAD], sep=ids[SEP], eom=ids[EOM], fim_prefix=ids[FIM_PREFIX],
            fim_middle=ids[FIM_MIDDLE], fim_suffix=ids[FIM_SUFFIX], fim_pad=ids[FIM_PAD],
            masks=tuple(ids[mask_token(i)] for i in range(1, NUM_MASK_SENTINELS + 1)))
