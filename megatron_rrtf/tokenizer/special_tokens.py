"""The special tokens of OBJECTIVES.md, and the ids they resolve to in a given tokenizer."""

from __future__ import annotations

from dataclasses import dataclass

EOD = "<|endoftext|>"
PAD = "<pad>"
SEP = "<sep>"
EOM = "<eom>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
FIM_PAD = "<fim_pad>"
NUM_MASK_SENTINELS = 16
"""CodeGen2-style span sentinels <mask_1> ... <mask_16>; span corruption uses at most this many."""


def mask_token(i: int) -> str:
    """The i-th span sentinel, 1-based as in CodeGen2: mask_token(1) == '<mask_1>'."""
    return f"<mask_{i}>"


def special_tokens(num_masks: int = NUM_MASK_SENTINELS) -> list[str]:
    """Every special token in a fixed order (the order they get ids in our sentencepiece models)."""
    return [EOD, PAD, SEP, EOM, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD] + [
        mask_token(i) for i in range(1, num_masks + 1)
    ]


@dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of the special tokens in one tokenizer; objectives take this, never a tokenizer."""

    eod: int
    pad: int
    sep: int
    eom: int
    fim_prefix: int
    fim_middle: int
    fim_suffix: int
    fim_pad: int
    masks: tuple[int, ...]
    """masks[0] is <mask_1>."""

    def all_ids(self) -> set[int]:
        return {self.eod, self.pad, self.sep, self.eom, self.fim_prefix, self.fim_middle,
                self.fim_suffix, self.fim_pad, *self.masks}
