"""torch.distributed and megatron-core's process groups (torchrun or single process), set up and
torn down by one context manager, `process_groups`: library calls that need the groups (training,
export, import, perplexity) enter it and leave nothing behind."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def process_groups(parallel: ParallelConfig, seed: int) -> Iterator[tuple[int, int]]:
    """The default process group, megatron's model-parallel groups and the seeds for the body;
    yields (rank, world_size) and tears down what it set up, on error too.

    A default process group the caller started (torchrun code that calls several stages) is used
    and left running; megatron's model-parallel groups belong to this context alone, so entering
    while they exist (inside another `process_groups`) is refused instead of replacing them."""
    if parallel_state.model_parallel_is_initialized():
        raise RuntimeError("megatron's model-parallel groups are already set up: process_groups() "
                           "cannot nest (finish the enclosing one first)")
    owns_world = not dist.is_initialized()
    try:
        yield _initialize(parallel, seed)
    finally:
        if parallel_state.model_parallel_is_initialized():
            parallel_state.destroy_model_parallel()
        if owns_world and dist.is_initialized():
            dist.destroy_process_group()


def _initialize(parallel: ParallelConfig, seed: int) -> tuple[int, int]:
    """Process group + megatron model-parallel groups + seeds; CPU compat mode without CUDA."""
    cpu_compat.enable_if_no_cuda()
    rank, world = init_distributed(parallel.distributed_backend)
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
