"""Model FLOPs per token and MFU, for throughput reporting."""

from __future__ import annotations

import torch

from megatron_rrtf.config import ModelConfig

# Dense bf16 peak TFLOP/s per device (no sparsity), by device-name fragment.
PEAK_TFLOPS_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def flops_per_token(model: ModelConfig, vocab_size: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + causal attention scores (fwd+bwd)."""
    h, L, s = model.hidden_size, model.num_layers, model.seq_length
    kv = 2 * model.num_query_groups * model.kv_channels
    mlp = (3 if model.family == "rope" else 2) * h * model.ffn_size
    per_layer = h * (h + kv) + h * h + mlp
    matmul_params = L * per_layer + h * vocab_size
    attention = L * 2 * s * h          # QK^T and AV: 2 x s x h multiply-adds, halved for causal
    return 6.0 * matmul_params + 6.0 * attention


def peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, peak in PEAK_TFLOPS_BF16.items():
        if key in name:
            return peak
    return None
