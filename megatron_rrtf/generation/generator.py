"""`Generator`: a loaded Hugging Face causal LM that completes prompts through batched
`generate` (the `hf` backend); `Sampling`, how (from completer, shared with the vLLM backend).
The package docstring (megatron_rrtf.generation) states the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from megatron_rrtf.errors import CheckpointError, ConfigError
from megatron_rrtf.generation.completer import (
    MIN_PROMPT_BUDGET,
    Completer,
    Prompt,
    Sampler,
    Sampling,
)

__all__ = ["MIN_PROMPT_BUDGET", "Generator", "Prompt", "Sampler", "Sampling", "resolve_device"]


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


class Generator(Completer):
    """A loaded Hugging Face causal LM and its tokenizer, ready to complete prompts.

    Batching and seeding live here; running the model on one batch is `complete_batch`, which a
    backend with its own engine overrides (with `seed`): CTranslate2's is
    `generation.ct2_generator.CT2Generator`, which `load` picks for a CTranslate2 directory."""

    def __init__(self, model: Any, tokenizer: Any):
        limit = None
        for name in ("n_positions", "max_position_embeddings"):
            if getattr(model.config, name, None):
                limit = int(getattr(model.config, name))
                break
        self.use_tokenizer(tokenizer, limit)
        self.model = model.eval()

    def use_tokenizer(self, tokenizer: Any, max_positions: int | None) -> None:
        """The tokenizer, position limit and padding id every backend of this class needs."""
        Completer.__init__(self, tokenizer, max_positions)
        self.pad_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                       else tokenizer.eos_token_id)  # padded positions are masked: any id works

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

    @torch.no_grad()
    def _new_tokens(self, ids: list[list[int]], sampling: Sampling, progress: bool,
                    desc: str) -> list[list[list[int]]]:
        stop_ids = self.stop_ids(sampling)
        rows = [i for i in range(len(ids)) for _ in range(sampling.num_samples)]
        new_ids: list[list[list[int]]] = [[] for _ in ids]
        self.seed(sampling.seed)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(rows), desc=desc, unit="sample")
        try:
            for start in range(0, len(rows), sampling.batch_size):
                batch_rows = rows[start:start + sampling.batch_size]
                batch = self.complete_batch([ids[i] for i in batch_rows], sampling, stop_ids)
                for i, new in zip(batch_rows, batch):
                    new_ids[i].append(new)
                if bar is not None:
                    bar.update(len(batch_rows))
        finally:
            if bar is not None:
                bar.close()
        return new_ids

    def seed(self, seed: int) -> None:
        """Seed the backend's sampling, once per `generate` call."""
        torch.manual_seed(seed)

    def complete_batch(self, prompts: list[list[int]], sampling: Sampling, stop_ids: set[int]
                       ) -> list[list[int]]:
        """New token ids for each prompt (a row may run past a stop: `completion` cuts it)."""
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
