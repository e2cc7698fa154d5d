"""Batched sampling from a Hugging Face causal LM: prompts in, lists of completions out.

Used by HumanEval evaluation and by RRTF's candidate sampling. Prompts are left-padded so every
row's new tokens start at the same position; each prompt is repeated `num_samples` times and the
rows are cut into batches of `batch_size` (a tokenizer without a pad token gets pad = EOS). Completions are cut at the first stop token id and
then at the first stop string (the stop itself is not kept). Greedy when temperature == 0,
otherwise temperature + nucleus (top-p) sampling. `torch.manual_seed(seed)` is set once per call:
the same prompts, config and batch size give the same completions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from megatron_rrtf.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    num_samples: int = 1
    """Completions per prompt."""
    batch_size: int = 16
    """Rows (prompt x sample) per generate call."""
    stop: tuple[str, ...] = ()
    """Completions are cut at the first of these strings, e.g. HumanEval's "\\ndef"."""
    stop_token_ids: tuple[int, ...] = ()
    """Generation of a row ends at these ids (the tokenizer's EOS is always one)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_samples < 1 or self.batch_size < 1:
            raise ConfigError("sampling: max_new_tokens, num_samples and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling: need temperature >= 0 and 0 < top_p <= 1, got "
                              f"temperature={self.temperature}, top_p={self.top_p}")
        if any(s == "" for s in self.stop):
            raise ConfigError("sampling.stop contains an empty string, which would cut everything")


HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
"""Stop strings for function-body completion (Codex paper, plus `def ` spacing)."""


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def cut_at_stop_ids(ids: Sequence[int], stop_ids: set[int]) -> list[int]:
    """Token ids up to (not including) the first stop id."""
    out = []
    for token in ids:
        if token in stop_ids:
            break
        out.append(int(token))
    return out


def load_model(path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None
               ) -> tuple[Any, Any]:
    """(model, tokenizer) from a Hugging Face model directory, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path} is not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    return model.to(device).eval(), tokenizer


@torch.no_grad()
def generate(prompts: Sequence[str], model: Any, tokenizer: Any, config: SamplingConfig,
             progress: bool = False) -> list[list[str]]:
    """`config.num_samples` completions for each prompt (completion text only, stops removed)."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no eos token; generation needs one to stop and pad")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:  # padded positions are masked out, any id will do
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id
    stop_ids = {tokenizer.eos_token_id, *config.stop_token_ids}
    rows = [i for i in range(len(prompts)) for _ in range(config.num_samples)]
    completions: list[list[str]] = [[] for _ in prompts]
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    sampling = ({"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
                if config.temperature > 0 else {"do_sample": False})
    if config.stop:
        sampling.update(stop_strings=list(config.stop), tokenizer=tokenizer)
    starts = range(0, len(rows), config.batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="generate", unit="sample")
    try:
        for start in starts:
            batch_rows = rows[start:start + config.batch_size]
            enc = tokenizer([prompts[i] for i in batch_rows], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            input_ids = enc["input_ids"].to(device)            # (B, T) left-padded
            attention_mask = enc["attention_mask"].to(device)  # (B, T)
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                 max_new_tokens=config.max_new_tokens, pad_token_id=pad_id,
                                 eos_token_id=sorted(stop_ids), **sampling)
            new_tokens = out[:, input_ids.shape[1]:].tolist()  # (B, <= max_new_tokens)
            for prompt_index, ids in zip(batch_rows, new_tokens):
                text = tokenizer.decode(cut_at_stop_ids(ids, stop_ids), skip_special_tokens=True)
                completions[prompt_index].append(truncate_at_stop(text, config.stop))
            if bar is not None:
                bar.update(len(batch_rows))
    finally:
        if bar is not None:
            bar.close()
    return completions


def max_positions(model: Any) -> int | None:
    """The longest sequence the model's position table holds (None: no fixed limit)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return None


@torch.no_grad()
def generate_ids(prompts: Sequence[Sequence[int]], model: Any, pad_id: int,
                 config: SamplingConfig, tokenizer: Any = None, progress: bool = False,
                 desc: str = "generate") -> list[list[list[int]]]:
    """Like `generate`, for prompts that are already token ids (infill prompts hold special
    tokens that text would not encode): `config.num_samples` lists of new ids per prompt, cut
    before the first stop id. `config.stop` strings need `tokenizer`; the caller cuts the decoded
    text at them. Prompts must fit the model with `max_new_tokens` (see `max_positions`)."""
    limit = max_positions(model)
    too_long = [i for i, p in enumerate(prompts)
                if limit and len(p) + config.max_new_tokens > limit]
    if too_long:
        raise ConfigError(f"prompt {too_long[0]} has {len(prompts[too_long[0]])} tokens; with "
                          f"max_new_tokens={config.max_new_tokens} it exceeds the model's "
                          f"{limit} positions: trim the prompt or lower max_new_tokens")
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    stop_ids = {*eos_ids, *config.stop_token_ids}
    if not stop_ids:
        raise ConfigError("generate_ids: no stop ids (the model has no eos and none were given)")
    rows = [i for i in range(len(prompts)) for _ in range(config.num_samples)]
    out_ids: list[list[list[int]]] = [[] for _ in prompts]
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    sampling: dict[str, Any] = ({"do_sample": True, "temperature": config.temperature,
                                 "top_p": config.top_p}
                                if config.temperature > 0 else {"do_sample": False})
    if config.stop:
        sampling.update(stop_strings=list(config.stop), tokenizer=tokenizer)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc=desc, unit="sample")
    try:
        for start in range(0, len(rows), config.batch_size):
            batch_rows = rows[start:start + config.batch_size]
            width = max(len(prompts[i]) for i in batch_rows)
            input_ids = torch.full((len(batch_rows), width), pad_id, dtype=torch.long)  # (B, T)
            attention_mask = torch.zeros_like(input_ids)                                # (B, T)
            for r, i in enumerate(batch_rows):  # left padding: new tokens start at column T
                n = len(prompts[i])
                input_ids[r, width - n:] = torch.tensor(list(prompts[i]), dtype=torch.long)
                attention_mask[r, width - n:] = 1
            out = model.generate(input_ids=input_ids.to(device),
                                 attention_mask=attention_mask.to(device),
                                 max_new_tokens=config.max_new_tokens, pad_token_id=pad_id,
                                 eos_token_id=sorted(stop_ids), **sampling)
            for prompt_index, ids in zip(batch_rows, out[:, width:].tolist()):
                out_ids[prompt_index].append(cut_at_stop_ids(ids, stop_ids))
            if bar is not None:
                bar.update(len(batch_rows))
    finally:
        if bar is not None:
            bar.close()
    return out_ids
