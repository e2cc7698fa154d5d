"""Model section: the transformer's shape and the family that fixes how it maps onto Hugging Face."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_rrtf.errors import ConfigError


@dataclass
class ModelConfig:
    family: Literal["starcoder", "rope"] = "starcoder"
    """starcoder: learned absolute positions, LayerNorm, GELU-tanh, biases (-> GPTBigCode);
    rope: RoPE, RMSNorm, SwiGLU, no biases (-> Llama)."""
    num_layers: int = 2
    hidden_size: int = 128
    num_attention_heads: int = 4
    num_query_groups: int = 1
    """K/V heads: 1 = multi-query attention (MQA); num_attention_heads = plain multi-head."""
    ffn_hidden_size: int | None = None
    """Defaults to 4*hidden (starcoder) or the Llama rule 8/3*hidden rounded up to 64 (rope)."""
    seq_length: int = 256
    """Training context length; also the size of the learned position table (starcoder)."""
    vocab_size: int | None = None
    """None: taken from the tokenizer. Padded up to a multiple of make_vocab_size_divisible_by."""
    make_vocab_size_divisible_by: int = 128
    """Must be a multiple of parallel.tensor_parallel. The padding does not depend on the TP size,
    so a checkpoint saved with one layout loads into another."""
    rotary_base: float = 10000.0
    norm_epsilon: float = 1e-5
    init_method_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    tie_embeddings: bool = False
    attention_backend: Literal["auto", "sdpa", "flash", "local"] = "auto"
    """auto: flash-attn on CUDA when installed, else PyTorch SDPA; local: megatron's unfused."""
    spec: Literal["auto", "local", "te"] = "auto"
    """Layer modules. te: Transformer Engine's linears and fused norm+linear (needs CUDA and the
    `gpu` extra); local: megatron's own modules; auto: te when it imports on CUDA, else local.
    Core attention is ours in both (attention_backend), so documents and prefixes behave alike."""
    recompute: Literal["none", "selective", "full"] = "none"
    """Activation recomputation: selective = core attention only (megatron's selective);
    full = whole layers, grouped by recompute_method / recompute_num_layers."""
    recompute_method: Literal["uniform", "block"] = "uniform"
    """full only. uniform: checkpoint the input of every group of recompute_num_layers layers;
    block: recompute the first recompute_num_layers layers of each pipeline chunk, keep the rest."""
    recompute_num_layers: int = 1

    @property
    def kv_channels(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def ffn_size(self) -> int:
        if self.ffn_hidden_size is not None:
            return self.ffn_hidden_size
        if self.family == "starcoder":
            return 4 * self.hidden_size
        return 64 * ((int(8 * self.hidden_size / 3) + 63) // 64)

    def validate(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "num_query_groups",
                     "seq_length", "make_vocab_size_divisible_by"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be >= 1")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"model.hidden_size={self.hidden_size} is not divisible by "
                f"model.num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_query_groups:
            raise ConfigError(
                f"model.num_attention_heads={self.num_attention_heads} is not divisible by "
                f"model.num_query_groups={self.num_query_groups} (1 = MQA)"
            )
        if self.family == "rope" and self.kv_channels % 2:
            raise ConfigError(f"model.hidden_size/num_attention_heads={self.kv_channels} must be "
                              "even for RoPE (model.family=rope)")
        if self.ffn_hidden_size is not None and self.ffn_hidden_size < 1:
            raise ConfigError(f"model.ffn_hidden_size={self.ffn_hidden_size} must be >= 1")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ConfigError(f"model.vocab_size={self.vocab_size} must be >= 2 (or null)")
        if self.recompute_num_layers < 1:
            raise ConfigError(f"model.recompute_num_layers={self.recompute_num_layers} must be >= 1")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be in [0, 1)")

    def real_vocab_size(self, tokenizer_vocab_size: int) -> int:
        """model.vocab_size, or the tokenizer's size when it is null."""
        return self.vocab_size or tokenizer_vocab_size

    def padded_vocab_for(self, tokenizer_vocab_size: int) -> int:
        """Rows of the embedding table for a tokenizer of this size: the real vocabulary,
        padded."""
        return self.padded_vocab_size(self.real_vocab_size(tokenizer_vocab_size))

    def padded_vocab_size(self, vocab_size: int) -> int:
        """The embedding table is padded so every TP shard has equal, aligned rows."""
        multiple = self.make_vocab_size_divisible_by
        return ((vocab_size + multiple - 1) // multiple) * multiple

    def num_parameters(self, vocab_size: int) -> int:
        """Exact parameter count of the megatron model for an (already padded) vocabulary."""
        h, f, L = self.hidden_size, self.ffn_size, self.num_layers
        kv = 2 * self.num_query_groups * self.kv_channels
        qkv = h * (h + kv)
        proj = h * h
        if self.family == "starcoder":
            attn = qkv + (h + kv) + proj + h           # weights + biases
            mlp = 2 * h * f + f + h
            norms = 2 * 2 * h                          # two LayerNorms (weight + bias)
            final_norm = 2 * h
            pos = self.seq_length * h
        else:
            attn = qkv + proj
            mlp = 3 * h * f                             # gate, up (fused fc1) and down
            norms = 2 * h                               # two RMSNorms (weight only)
            final_norm = h
            pos = 0
        embed = vocab_size * h
        output = 0 if self.tie_embeddings else vocab_size * h
        return embed + pos + L * (attn + mlp + norms) + final_norm + output
