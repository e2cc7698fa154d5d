"""The `vllm` sampling backend: `VLLMGenerator`, the same `Completer` as the HF backend (same
prompt fitting, stop ids and stop-string cutting) with vLLM's engine drawing the new tokens.

vLLM (extra `gpu`, CUDA only) is imported only by `VLLMGenerator.load`. The adapter talks to the
engine through vLLM's offline API alone: `LLM.generate(prompts, sampling_params, use_tqdm=...)`
with token-id prompts ({"prompt_token_ids": ids}) and one `SamplingParams(n, temperature, top_p,
max_tokens, stop, stop_token_ids, seed)` per prompt, reading `RequestOutput.outputs[i].token_ids`.
Completions are rebuilt from the token ids by `Completer.completion`, never taken from vLLM's
own detokenized `text`, so both backends cut a row in exactly the same place.

Seeds: prompt i of a call with seed s samples with seed SeedSequence((s, i)), so completions
depend on the call's seed and the prompt's place only, not on how vLLM schedules or batches the
requests (nor on GPU count). The two backends draw from
different random streams: at temperature > 0 they give different (equally distributed) samples;
greedy completions agree up to the numerics of the two kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from megatron_rrtf.errors import CheckpointError, ConfigError
from megatron_rrtf.generation.completer import Completer, Sampling

VLLM_MISSING = ("rrtf.sample.backend=vllm needs vLLM (pip install 'megatron-rrtf[gpu]' on a "
                "CUDA machine), or set rrtf.sample.backend=hf")


def prompt_seed(seed: int, index: int) -> int:
    """The vLLM seed of prompt `index` in a call seeded `seed`."""
    return int(np.random.SeedSequence((seed, index)).generate_state(1)[0])


class VLLMGenerator(Completer):
    """A vLLM engine (or any object with its `generate`) plus the model's tokenizer.

    params_factory builds one request's sampling parameters (vllm.SamplingParams; tests pass a
    recorder)."""

    def __init__(self, engine: Any, tokenizer: Any, max_positions: int | None,
                 params_factory: Callable[..., Any]):
        super().__init__(tokenizer, max_positions)
        self.engine, self.params_factory = engine, params_factory

    @classmethod
    def load(cls, path: str | Path, dtype: str = "auto", tensor_parallel: int = 1,
             gpu_memory_utilization: float = 0.9, seed: int = 0) -> VLLMGenerator:
        """A vLLM engine over a Hugging Face model directory (auto dtype: bf16)."""
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise ConfigError(f"{VLLM_MISSING} ({exc})") from None
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path} is not a Hugging Face model directory (no config.json)")
        config = AutoConfig.from_pretrained(path)
        limit = getattr(config, "n_positions", None) or getattr(config,
                                                               "max_position_embeddings", None)
        engine = LLM(model=str(path), tokenizer=str(path),
                     dtype="bfloat16" if dtype == "auto" else dtype,
                     tensor_parallel_size=tensor_parallel, seed=seed,
                     gpu_memory_utilization=gpu_memory_utilization,
                     max_model_len=int(limit) if limit else None)
        return cls(engine, AutoTokenizer.from_pretrained(path), int(limit) if limit else None,
                   SamplingParams)

    def request_params(self, sampling: Sampling, index: int) -> Any:
        """Sampling parameters of prompt `index`: greedy asks for one row (the others would be
        copies of it; `_new_tokens` repeats it)."""
        greedy = sampling.temperature == 0
        return self.params_factory(
            n=1 if greedy else sampling.num_samples,
            temperature=sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop),
            stop_token_ids=sorted(self.stop_ids(sampling)),
            seed=prompt_seed(sampling.seed, index))

    def _new_tokens(self, ids: list[list[int]], sampling: Sampling, progress: bool,
                    desc: str) -> list[list[list[int]]]:
        if not ids:
            return []
        params = [self.request_params(sampling, i) for i in range(len(ids))]
        outputs = self.engine.generate([{"prompt_token_ids": p} for p in ids], params,
                                       use_tqdm=progress)
        if len(outputs) != len(ids):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(ids)} prompts")
        rows = []
        for out in outputs:
            drawn = [list(o.token_ids) for o in out.outputs]
            if sampling.temperature == 0:
                drawn = drawn[:1] * sampling.num_samples
            if len(drawn) != sampling.num_samples:
                raise RuntimeError(f"vLLM returned {len(drawn)} completions for a prompt, "
                                   f"asked for {sampling.num_samples}")
            rows.append(drawn)
        return rows
