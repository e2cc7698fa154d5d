"""Start torch.distributed and megatron-core's process groups (torchrun or single process)."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state, tensor_parallel

from megatron_rrtf.config import ParallelConfig
from megatron_rrtf.parallel import cpu_compat


def init_distributed(backend: str = "auto") -> tuple[int, int]:
    """Initialise the default process group from torchrun's env vars, or as a world of one.

    Returns (rank, world_size). A no-op when already initialised."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    timeout = datetime.timedelta(minutes=10)
    if "RANK" in os.environ:  # torchrun (or tests/distributed.py) set the rendezvous variables
        dist.init_process_group(backend=backend, timeout=timeout)
    else:  # a world of one: an in-memory store, so no TCP port to race other jobs for, and
        # os.environ is left alone so child processes start clean
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def initialize_parallel(parallel: ParallelConfig, seed: int) -> tuple[int, int]:
    """Process group + megatron model-parallel groups + seeds; CPU compat mode without CUDA."""
    cpu_compat.enable_if_no_cuda()
    rank, world = init_distributed(parallel.distributed_backend)
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline,
    )
    set_seed(seed)
    return rank, world


def set_seed(seed: int) -> None:
    """Same CPU seed on every rank (identical init before TP split); per-TP-rank dropout stream."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def destroy_parallel() -> None:
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
