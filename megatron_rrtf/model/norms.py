"""The norm for megatron's local spec slots (input, pre-MLP and final norm): PyTorch's LayerNorm or
RMSNorm, usable with sequence parallelism.

megatron-core's own torch fallback (`WrappedTorchNorm`) refuses sequence parallelism, and its
apex/TE norms need CUDA packages. Under sequence parallelism each tensor-parallel rank normalises
its own slice of the sequence, so the norm weights' gradients differ per rank and must be summed
over the TP group: megatron's `finalize_model_grads` does that for every parameter marked
`sequence_parallel`, which is what this factory adds.
"""

from __future__ import annotations

import torch
from megatron.core.transformer import TransformerConfig

NORMS = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}


class SequenceParallelNorm:
    """Builds `torch.nn.LayerNorm` / `torch.nn.RMSNorm` (config.normalization) with its
    parameters marked for megatron's sequence-parallel gradient all-reduce."""

    def __new__(cls, config: TransformerConfig, hidden_size: int, eps: float = 1e-5,
                persist_layer_norm: bool = False, zero_centered_gamma: bool = False,
                normalization: str = "LayerNorm") -> torch.nn.Module:
        if config.normalization not in NORMS:
            raise ValueError(f"normalization {config.normalization!r} is not one of {list(NORMS)}")
        norm = NORMS[config.normalization](hidden_size, eps=eps, dtype=config.params_dtype)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm
