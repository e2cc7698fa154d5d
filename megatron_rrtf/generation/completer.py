"""`Completer`: what every generation backend shares, so the HF and vLLM backends cannot drift
apart: prompts to token ids within the model's budget (`fit`), the ids that end a row, and new
token ids to completion text (`completion`: cut at the first stop id, decode, cut at the first
stop string). A backend only turns fitted prompt ids into new token ids (`_new_tokens`).
Imports no torch, so the vLLM adapter and its tests need only a tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.generation.stops import cut_at_stop, cut_at_stop_ids

log = logging.getLogger(__name__)

MIN_PROMPT_BUDGET = 16
"""Fewer prompt positions than this left by max_new_tokens is refused as a setting mistake."""

Prompt = str | Sequence[int]
Sampler = Callable[[list[str], float, int, int], list[list[str]]]
"""(prompts, temperature, num_samples, seed) -> completions per prompt: how the RRTF stage asks
for samples (tests stand in a fake)."""


@dataclass(frozen=True)
class Sampling:
    """How to complete a batch of prompts."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    num_samples: int = 1
    """Completions per prompt."""
    batch_size: int = 32
    """Rows (prompt x sample) per generate call of the model (hf; vllm schedules its own)."""
    stop: tuple[str, ...] = ()
    """Completions are cut at the first of these strings, e.g. HumanEval's "\\ndef"."""
    stop_token_ids: tuple[int, ...] = ()
    """A row ends at these ids (the tokenizer's EOS always ends it)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_samples < 1 or self.batch_size < 1:
            raise ConfigError("sampling: max_new_tokens, num_samples and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling: need temperature >= 0 and 0 < top_p <= 1, got "
                              f"temperature={self.temperature}, top_p={self.top_p}")
        if any(s == "" for s in self.stop):
            raise ConfigError("sampling.stop contains an empty string, which would cut everything")


class Completer:
    """A tokenizer plus the model's position limit; subclasses bring the model."""

    def __init__(self, tokenizer: Any, max_positions: int | None):
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no eos token; generation needs one to stop")
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        """The longest sequence the model's position table holds (None: no fixed limit)."""
        self.eos_ids = {tokenizer.eos_token_id}

    def prompt_budget(self, max_new_tokens: int) -> int | None:
        """Prompt tokens that fit beside `max_new_tokens` new ones (None: no limit)."""
        limit = self.max_positions
        if limit is None:
            return None
        budget = limit - max_new_tokens
        if budget < MIN_PROMPT_BUDGET:
            raise ConfigError(f"max_new_tokens={max_new_tokens} leaves {budget} of the model's "
                              f"{limit} positions for the prompt; lower it")
        return budget

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no special tokens added (no length warning: `fit` cuts)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False, verbose=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens dropped, spacing untouched (code)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)

    def fit(self, prompts: Sequence[Prompt], max_new_tokens: int
            ) -> tuple[list[list[int]], int]:
        """Prompts as ids within the budget (a longer one loses its start), and how many were
        cut."""
        ids = [self.encode(p) if isinstance(p, str) else list(p) for p in prompts]
        budget = self.prompt_budget(max_new_tokens)
        if budget is None:
            return ids, 0
        cut = sum(len(p) > budget for p in ids)
        return [p[-budget:] for p in ids], cut

    def stop_ids(self, sampling: Sampling) -> set[int]:
        """Ids that end a row: EOS and sampling.stop_token_ids."""
        return self.eos_ids | set(sampling.stop_token_ids)

    def completion(self, new_ids: Sequence[int], sampling: Sampling) -> str:
        """A row's new token ids -> its completion: up to the first stop id, decoded, cut before
        the first stop string."""
        return cut_at_stop(self.decode(cut_at_stop_ids(new_ids, self.stop_ids(sampling))),
                           sampling.stop)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, progress: bool = False,
                 desc: str = "generate") -> list[list[str]]:
        """`sampling.num_samples` completions per prompt: new text only, stops removed."""
        ids, cut = self.fit(prompts, sampling.max_new_tokens)
        if cut:
            log.warning("%s: %d of %d prompts are longer than the model's %s positions minus "
                        "max_new_tokens=%d; their start was cut", desc, cut, len(ids),
                        self.max_positions, sampling.max_new_tokens)
        new = self._new_tokens(ids, sampling, progress, desc)
        return [[self.completion(row, sampling) for row in rows] for rows in new]

    def _new_tokens(self, ids: list[list[int]], sampling: Sampling, progress: bool,
                    desc: str) -> list[list[list[int]]]:
        """New token ids per prompt, `sampling.num_samples` rows each (a row may run past a
        stop: `completion` cuts it)."""
        raise NotImplementedError

    def sampler(self, base: Sampling) -> Sampler:
        """The RRTF stage's (prompts, temperature, num_samples, seed) -> completions, with the
        other settings from `base` (top_p applies only when sampling)."""

        def run(prompts: list[str], temperature: float, num_samples: int, seed: int):
            settings = replace(base, temperature=temperature, num_samples=num_samples, seed=seed,
                               top_p=base.top_p if temperature > 0 else 1.0)
            return self.generate(prompts, settings)
        return run
