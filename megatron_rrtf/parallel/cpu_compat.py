"""CPU compatibility mode: lets megatron-core's tensor/pipeline parallel code run on CPU with gloo.

megatron-core assumes CUDA in a handful of places (see ../shared/MEGATRON_NOTES.md): buffers made
with `device=torch.cuda.current_device()` or `device="cuda"`, the CUDA RNG tracker used around
dropout, `torch.cuda.synchronize`, and asserts on `tensor.type() == "torch.cuda.FloatTensor"`.
When (and only when) CUDA is absent, `enable()` redirects those to their CPU equivalents so tests
can prove TP/PP numerics on a laptop. It refuses to switch on when CUDA is present: on a GPU
machine every one of these redirections would silently move work off the GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

_ACTIVE: _CudaToCpuMode | None = None
_TARGET = "cpu"   # where redirected CUDA allocations go: "cpu", or "meta" inside allocate_on_meta


def _is_cuda_device(device: object) -> bool:
    if isinstance(device, int) and not isinstance(device, bool):
        return True  # a bare index means a CUDA ordinal
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return False


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments to CPU and answers `Tensor.type()` with the CUDA name."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1)
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs["device"] = _TARGET
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], _TARGET, *args[2:])
        return func(*args, **kwargs)


def is_active() -> bool:
    return _ACTIVE is not None


def enable() -> None:
    """Switch the CPU compatibility mode on (idempotent). Raises if CUDA is available."""
    global _ACTIVE
    if torch.cuda.is_available():
        raise RuntimeError(
            "megatron_rrtf CPU compatibility mode refuses to switch on: CUDA is available, and "
            "redirecting megatron-core's CUDA calls to CPU would silently move work off the GPU"
        )
    if _ACTIVE is not None:
        return
    from megatron.core.tensor_parallel import random as mp_random

    torch.cuda.current_device = lambda: _TARGET
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    torch.cuda.set_rng_state = lambda state, device="cuda": torch.set_rng_state(state)
    # The RNG tracker seeds its model-parallel stream with torch.cuda.manual_seed between a get
    # and a set of the state, so seeding the CPU generator there is restored right after.
    torch.cuda.manual_seed = lambda seed: torch.default_generator.manual_seed(seed)
    mp_random._get_cuda_rng_state = (
        lambda device="cuda", clone=False, graph_safe=False: torch.get_rng_state()
    )
    mp_random._set_cuda_rng_state = (
        lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)
    )
    # On CPU the "CUDA" stream and the CPU stream are one generator, so the tracker's
    # "CPU RNG state changed within GPU RNG context" warning fires on every dropout.
    logging.getLogger(mp_random.__name__).setLevel(logging.ERROR)
    _ACTIVE = _CudaToCpuMode()
    _ACTIVE.__enter__()
    log.debug("megatron-core CPU compatibility mode enabled")


@contextmanager
def allocate_on_meta() -> Iterator[None]:
    """Inside, tensors megatron allocates "on CUDA" and tensors made without a device land on
    the meta device: shapes and dtypes without memory, to build a 16B-parameter model and
    count or inspect it on a laptop. Needs the compatibility mode (no CUDA)."""
    global _TARGET
    if _ACTIVE is None:
        raise RuntimeError("allocate_on_meta() needs the CPU compatibility mode (cpu_compat.enable)")
    previous, _TARGET = _TARGET, "meta"
    try:
        with torch.device("meta"):
            yield
    finally:
        _TARGET = previous


def enable_if_no_cuda() -> bool:
    """Enable the mode when CUDA is absent; return whether it is active."""
    if not torch.cuda.is_available():
        enable()
    return is_active()
