"""`load_completer`: a model directory + rrtf.sample -> the backend that completes its prompts
(`hf`: generator.Generator on the configured device/dtype; `vllm`: vllm_engine.VLLMGenerator)."""

from __future__ import annotations

import os
from pathlib import Path

from megatron_rrtf.config.rrtf import SampleEngineConfig
from megatron_rrtf.generation.completer import Completer


def check_engine(engine: SampleEngineConfig) -> None:
    """Fail now, before any work, if rrtf.sample cannot run here: CUDA asked for but absent,
    or the vllm backend without vLLM."""
    if engine.backend == "vllm":
        import importlib.util

        from megatron_rrtf.errors import ConfigError
        from megatron_rrtf.generation.vllm_engine import VLLM_MISSING

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(VLLM_MISSING)
    from megatron_rrtf.generation.generator import resolve_device

    resolve_device("cuda" if engine.backend == "vllm" else engine.device, engine.dtype)


def load_completer(path: str | Path, engine: SampleEngineConfig, seed: int = 0) -> Completer:
    """Load the model at `path` with the backend, device and dtype of `engine`.

    One process per GPU (torchrun, srun) with device auto|cuda: the hf backend takes the GPU of
    LOCAL_RANK, so sampling shards on one node do not share a device."""
    if engine.backend == "vllm":
        from megatron_rrtf.generation.vllm_engine import VLLMGenerator

        return VLLMGenerator.load(path, engine.dtype, engine.tensor_parallel,
                                  engine.gpu_memory_utilization, seed)
    if (Path(path) / "model.bin").is_file():  # a CTranslate2 dir computes in its own type
        from megatron_rrtf.generation.ct2_generator import CT2Generator

        return CT2Generator.load(path, device=engine.device, dtype=engine.dtype)
    import torch

    from megatron_rrtf.generation.generator import Generator, resolve_device

    where, dtype = resolve_device(engine.device, engine.dtype)
    if where.type == "cuda" and "LOCAL_RANK" in os.environ:
        where = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    return Generator.load(path, str(where), dtype)
