"""megatron-rrtf: pretrain code LMs with CodeGen2 objectives on megatron-core, align with RRTF."""

__version__ = "0.1.0"
