"""Inference-side infill prompts in the exact formats the objectives train on, and the step that
cuts the generated middle at its stop token.

Span corruption (CodeGen2): `prefix <mask_1> suffix <|endoftext|> <sep> <mask_1>`, the model
writes the middle then `<eom>`. FIM: PSM `<fim_prefix> prefix <fim_suffix> suffix <fim_middle>`
or SPM `<fim_prefix> <fim_suffix> suffix <fim_middle> prefix`, the model writes the middle then
`<|endoftext|>`. Prefix and suffix are encoded separately, as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from megatron_rrtf.objectives.fim import Encode
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds


@dataclass(frozen=True)
class InfillPrompt:
    prompt_ids: list[int]
    """Feed these; the model continues with the middle."""
    stop_ids: tuple[int, ...]
    """Generation ends at the first of these (not part of the middle)."""


def span_infill_prompt(prefix: str, suffix: str, encode: Encode,
                       ids: SpecialTokenIds) -> InfillPrompt:
    """CodeGen2 infill prompt for a span-corruption-trained model; stops at <eom>."""
    prompt = [*encode(prefix), ids.masks[0], *encode(suffix), ids.eod, ids.sep, ids.masks[0]]
    return InfillPrompt(prompt, (ids.eom,))


def fim_prompt(prefix: str, suffix: str, encode: Encode, ids: SpecialTokenIds,
               mode: Literal["psm", "spm"] = "psm") -> InfillPrompt:
    """bigcode FIM prompt (PSM or SPM, as trained); stops at <|endoftext|>."""
    if mode == "psm":
        prompt = [ids.fim_prefix, *encode(prefix), ids.fim_suffix, *encode(suffix),
                  ids.fim_middle]
    elif mode == "spm":
        prompt = [ids.fim_prefix, ids.fim_suffix, *encode(suffix), ids.fim_middle,
                  *encode(prefix)]
    else:
        raise ValueError(f"FIM mode {mode!r} is not 'psm' or 'spm'")
    return InfillPrompt(prompt, (ids.eod,))


def extract_middle(generated_ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """The generated middle: the new ids (prompt excluded) up to, not including, the first stop
    id; all of them if none was generated (the length limit was hit)."""
    stops = set(stop_ids)
    middle: list[int] = []
    for token in generated_ids:
        if token in stops:
            break
        middle.append(int(token))
    return middle
