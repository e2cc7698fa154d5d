"""`Generator`: a loaded Hugging Face causal LM that completes prompts, and `Sampling`, how.
The package docstring (megatron_rrtf.generation) states the rules."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from megatron_rrtf.errors import CheckpointError, ConfigError
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
    """Rows (prompt x sample) per generate call of the model."""
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


def resolve_device(device: str = "auto", dtype: str | torch.dtype | None = "auto"
                   ) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) for inference: `auto` is CUDA in bf16 when present, else CPU in fp32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine")
    if dtype in (None, "auto"):
        return resolved, torch.bfloat16 if resolved.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return resolved, dtype
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        raise ConfigError(f"dtype {dtype!r} is not one of auto, {', '.join(names)}")
    return resolved, names[dtype]


class Generator:
    """A loaded Hugging Face causal LM and its tokenizer, ready to complete prompts.

    Everything but running the model (fitting prompts, batching, stops, decoding) lives here;
    a backend overrides `complete_batch` (and `max_positions`, `seed`): CTranslate2's is
    `generation.ct2_generator.CT2Generator`, which `load` picks for a CTranslate2 directory."""

    def __init__(self, model: Any, tokenizer: Any):
        self.use_tokenizer(tokenizer)
        self.model = model.eval()

    def use_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no eos token; generation needs one to stop")
        self.tokenizer = tokenizer
        self.pad_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                       else tokenizer.eos_token_id)  # padded positions are masked: any id works
        self.eos_ids = {tokenizer.eos_token_id}

    @classmethod
    def load(cls, path: str | Path, device: str = "auto",
             dtype: str | torch.dtype | None = "auto") -> Generator:
        """From a Hugging Face model directory (config.json, weights, tokenizer files), or a
        CTranslate2 one (model.bin beside config.json: `CT2Generator`)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path} is not a Hugging Face model directory (no config.json)")
        if (path / "model.bin").is_file():
            from megatron_rrtf.generation.ct2_generator import CT2Generator

            return CT2Generator.load(path, device=device, dtype=dtype)
        where, torch_dtype = resolve_device(device, dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        return cls(model.to(where), tokenizer)

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model's position table holds (None: no fixed limit)."""
        for name in ("n_positions", "max_position_embeddings"):
            value = getattr(self.model.config, name, None)
            if value:
                return int(value)
        return None

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

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, progress: bool = False,
                 desc: str = "generate") -> list[list[str]]:
        """`sampling.num_samples` completions per prompt: new text only, stops removed."""
        ids, cut = self.fit(prompts, sampling.max_new_tokens)
        if cut:
            log.warning("%s: %d of %d prompts are longer than the model's %s positions minus "
                        "max_new_tokens=%d; their start was cut", desc, cut, len(ids),
                        self.max_positions, sampling.max_new_tokens)
        stop_ids = self.eos_ids | set(sampling.stop_token_ids)
        rows = [i for i in range(len(ids)) for _ in range(sampling.num_samples)]
        completions: list[list[str]] = [[] for _ in ids]
        self.seed(sampling.seed)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(rows), desc=desc, unit="sample")
        try:
            for start in range(0, len(rows), sampling.batch_size):
                batch_rows = rows[start:start + sampling.batch_size]
                new_ids = self.complete_batch([ids[i] for i in batch_rows], sampling, stop_ids)
                for i, new in zip(batch_rows, new_ids):
                    text = self.decode(cut_at_stop_ids(new, stop_ids))
                    completions[i].append(cut_at_stop(text, sampling.stop))
                if bar is not None:
                    bar.update(len(batch_rows))
        finally:
            if bar is not None:
                bar.close()
        return completions

    def seed(self, seed: int) -> None:
        """Seed the backend's sampling, once per `generate` call."""
        torch.manual_seed(seed)

    def complete_batch(self, prompts: list[list[int]], sampling: Sampling, stop_ids: set[int]
                       ) -> list[list[int]]:
        """New token ids for each prompt (the caller cuts them at the first stop id)."""
        device = next(self.model.parameters()).device
        options: dict[str, Any] = ({"do_sample": True, "temperature": sampling.temperature,
                                    "top_p": sampling.top_p}
                                   if sampling.temperature > 0 else {"do_sample": False})
        if sampling.stop:
            options.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros_like(input_ids)                                  # (B, T)
        for r, prompt in enumerate(prompts):  # left padding: new tokens start at column T
            input_ids[r, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[r, width - len(prompt):] = 1
        out = self.model.generate(input_ids=input_ids.to(device),
                                  attention_mask=attention_mask.to(device),
                                  max_new_tokens=sampling.max_new_tokens,
                                  pad_token_id=self.pad_id, eos_token_id=sorted(stop_ids),
                                  **options)
        return out[:, width:].tolist()                                     # (B, <= new tokens)

    def sampler(self, base: Sampling) -> Sampler:
        """The RRTF stage's (prompts, temperature, num_samples, seed) -> completions, with the
        other settings from `base` (top_p applies only when sampling)."""

        def run(prompts: list[str], temperature: float, num_samples: int, seed: int):
            settings = replace(base, temperature=temperature, num_samples=num_samples, seed=seed,
                               top_p=base.top_p if temperature > 0 else 1.0)
            return self.generate(prompts, settings)
        return run
