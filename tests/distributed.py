"""Run a function in N gloo processes (torch.multiprocessing) and collect each rank's result."""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, out_dir: str, fn: Callable, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    from megatron_rrtf.parallel.init import init_distributed

    torch.set_num_threads(1)
    init_distributed()  # the world outlives the process_groups() blocks inside fn
    result = fn(*args)
    Path(out_dir, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    dist.destroy_process_group()


PORT_ATTEMPTS = 3


def run_distributed(fn: Callable, world_size: int = 2, *args) -> list:
    """Spawn `world_size` processes running fn(*args) with torch.distributed env vars set.

    The rendezvous port is free when picked but may be taken before rank 0 binds it (the other
    pytest worker's gloo sockets use ephemeral ports too): that start is retried on a new port."""
    for attempt in range(PORT_ATTEMPTS):
        with tempfile.TemporaryDirectory() as out_dir:
            try:
                mp.start_processes(_entry, args=(world_size, _free_port(), out_dir, fn, args),
                                   nprocs=world_size, join=True, start_method="spawn")
            except mp.ProcessRaisedException as e:
                if "EADDRINUSE" in str(e) and attempt + 1 < PORT_ATTEMPTS:
                    continue
                raise
            return [pickle.loads(Path(out_dir, f"rank{r}.pkl").read_bytes())
                    for r in range(world_size)]
    raise AssertionError("unreachable")
