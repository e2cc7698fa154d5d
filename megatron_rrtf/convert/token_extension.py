"""Give an imported Hugging Face tokenizer our special tokens, and its model the rows for them.

A public StarCoder-family tokenizer has some of our special tokens (StarCoder: <|endoftext|>,
<fim_prefix>, <fim_middle>, <fim_suffix>, <fim_pad>; SantaCoder spells the FIM ones
<fim-prefix> ...) and lacks the rest (<pad>, <sep>, <eom>, <mask_1..16>), which the span
corruption and FIM objectives and RRTF need. On import:

  1. `plan_special_tokens`: each of our tokens is found under its own name, found under the
     tokenizer's own name for it (an alias: SantaCoder's FIM spellings; the tokenizer's EOS for
     <|endoftext|>), or added with the next free id, in `special_tokens()` order;
  2. `extend_tokenizer_dir`: the added tokens go into tokenizer.json as special added tokens, and
     the whole mapping into mrrtf_special_tokens.json (HFTokenizer resolves aliases through it);
  3. `set_new_rows`: the embedding and output tables grow to cover the new ids, each new row
     at the mean of the rows of the tokenizer's original ids, so old tokens' logits are unchanged
     and a new token starts as an "average" token.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.hf_tokenizer import SPECIAL_TOKEN_MAP
from megatron_rrtf.tokenizer.special_tokens import (
    EOD,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    special_tokens,
)

log = logging.getLogger(__name__)

FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    FIM_PREFIX: ("<fim-prefix>",),
    FIM_MIDDLE: ("<fim-middle>",),
    FIM_SUFFIX: ("<fim-suffix>",),
    FIM_PAD: ("<fim-pad>",),
}
"""Other names the StarCoder family uses for our tokens (SantaCoder's hyphenated FIM tokens);
StarCoder and StarCoder2 use our names themselves."""


@dataclass
class TokenPlan:
    """Where each of our special tokens lives in the extended tokenizer."""

    old_size: int
    """Ids in the tokenizer before extension."""
    new_size: int
    aliases: dict[str, str] = field(default_factory=dict)
    """Our name -> the tokenizer's own token, where they differ."""
    existing: dict[str, int] = field(default_factory=dict)
    """Our name -> id already in the tokenizer (under our name or its alias)."""
    added: dict[str, int] = field(default_factory=dict)
    """Our name -> new id (old_size, old_size + 1, ...)."""


def plan_special_tokens(vocab: dict[str, int], size: int, eos_token: str | None) -> TokenPlan:
    """Which of our tokens `vocab` (a tokenizer of `size` ids, EOS `eos_token`) has, and the ids
    the missing ones get."""
    plan = TokenPlan(old_size=size, new_size=size)
    for name in special_tokens():
        candidates = (name, *FAMILY_NAMES.get(name, ()))
        if name == EOD and eos_token:
            candidates += (eos_token,)
        found = next((c for c in candidates if c in vocab), None)
        if found is not None:
            plan.existing[name] = vocab[found]
            if found != name:
                plan.aliases[name] = found
        else:
            plan.added[name] = plan.new_size
            plan.new_size += 1
    return plan


def extend_tokenizer_dir(tokenizer_dir: Path, plan: TokenPlan) -> None:
    """Add `plan.added` to tokenizer_dir/tokenizer.json and write the mapping file."""
    from tokenizers import AddedToken, Tokenizer

    if plan.added:
        path = tokenizer_dir / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(
                f"{tokenizer_dir} has no tokenizer.json, so the missing special tokens "
                f"{', '.join(plan.added)} cannot be added; convert the tokenizer to a fast one "
                "(AutoTokenizer(...).save_pretrained) first, or import with --keep-tokenizer")
        tok = Tokenizer.from_file(str(path))
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False, single_word=False,
                                           lstrip=False, rstrip=False) for t in plan.added])
        got = {t: tok.token_to_id(t) for t in plan.added}
        if got != plan.added:  # a hole or a duplicate in the vocabulary moved the new ids
            raise TokenizerError(f"{path}: the added special tokens got ids {got}, expected "
                                 f"{plan.added}; the tokenizer's vocabulary is not contiguous")
        tmp = path.with_name(path.name + ".tmp")
        tok.save(str(tmp))
        tmp.replace(path)
    (tokenizer_dir / SPECIAL_TOKEN_MAP).write_text(json.dumps(asdict(plan), indent=1) + "\n")
    log.info("tokenizer %s: %d special tokens found (%d under the tokenizer's own names), "
             "%d added (ids %d..%d)", tokenizer_dir, len(plan.existing), len(plan.aliases),
             len(plan.added), plan.old_size, plan.new_size - 1)


def set_new_rows(table: torch.Tensor, new_ids: list[int], old_rows: int) -> torch.Tensor:
    """`table` [rows, hidden] (already padded to cover `new_ids`) with each new id's row set to
    the mean of rows [0, old_rows) (computed in float64, cast back)."""
    if new_ids and max(new_ids) >= table.shape[0]:
        raise TokenizerError(f"new token id {max(new_ids)} is beyond the {table.shape[0]}-row "
                             "embedding table")
    out = table.clone()
    mean = table[:old_rows].double().mean(dim=0).to(table.dtype)               # [hidden]
    out[new_ids] = mean
    return out
