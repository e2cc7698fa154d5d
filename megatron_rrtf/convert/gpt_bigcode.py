"""model.family=starcoder <-> transformers GPTBigCodeForCausalLM (StarCoder's architecture).

Weights map one to one (no transposes): megatron's fused QKV with one K/V group is GPTBigCode's
multi-query c_attn [q | k | v]; with one group per head it is the multi-head c_attn, whose rows
are [q_h, k_h, v_h] per head -- the same per-group order. Other group counts have no GPTBigCode
form. Exact because both sides use LayerNorm, GELU(tanh) and learned absolute positions.
"""

from __future__ import annotations

import re

import torch

from megatron_rrtf.config import ModelConfig
from megatron_rrtf.convert.vocab import pad_rows, unpad_rows
from megatron_rrtf.errors import ConfigError, ExportError

FAMILY = "starcoder"
MODEL_TYPE = "gpt_bigcode"
ARCHITECTURE = "GPTBigCodeForCausalLM"

GLOBAL_NAMES = {
    "embedding.word_embeddings.weight": "transformer.wte.weight",
    "embedding.position_embeddings.weight": "transformer.wpe.weight",
    "decoder.final_layernorm.weight": "transformer.ln_f.weight",
    "decoder.final_layernorm.bias": "transformer.ln_f.bias",
    "output_layer.weight": "lm_head.weight",
}
LAYER_NAMES = {  # decoder.layers.{i}.<megatron> -> transformer.h.{i}.<hf>
    "input_layernorm.weight": "ln_1.weight",
    "input_layernorm.bias": "ln_1.bias",
    "self_attention.linear_qkv.weight": "attn.c_attn.weight",
    "self_attention.linear_qkv.bias": "attn.c_attn.bias",
    "self_attention.linear_proj.weight": "attn.c_proj.weight",
    "self_attention.linear_proj.bias": "attn.c_proj.bias",
    "pre_mlp_layernorm.weight": "ln_2.weight",
    "pre_mlp_layernorm.bias": "ln_2.bias",
    "mlp.linear_fc1.weight": "mlp.c_fc.weight",
    "mlp.linear_fc1.bias": "mlp.c_fc.bias",
    "mlp.linear_fc2.weight": "mlp.c_proj.weight",
    "mlp.linear_fc2.bias": "mlp.c_proj.bias",
}
IGNORED_MEGATRON = [r".*\._extra_state"]
"""TransformerEngine/fp8 metadata slots (None with megatron's local layer spec)."""
IGNORED_HF = [r"transformer\.bias", r"transformer\.h\.\d+\.attn\.masked_bias"]
"""GPTBigCode's causal-mask buffer (rebuilt from n_positions); lm_head.weight when tied."""
EMBEDDING_KEYS = ("embedding.word_embeddings.weight", "output_layer.weight")


def ignored_hf(model: ModelConfig) -> list[str]:
    return IGNORED_HF + ([r"lm_head\.weight"] if model.tie_embeddings else [])


def check_representable(model: ModelConfig) -> None:
    if model.family != FAMILY:
        raise ExportError(f"model.family={model.family!r} does not map to {ARCHITECTURE}")
    if model.num_query_groups not in (1, model.num_attention_heads):
        raise ExportError(
            f"model.num_query_groups={model.num_query_groups} cannot be represented by "
            f"{ARCHITECTURE}: it has multi-query (num_query_groups=1) or multi-head "
            f"(num_query_groups=model.num_attention_heads={model.num_attention_heads}) attention "
            "only; use model.family=rope (Llama) for grouped-query attention")


def hf_config(model: ModelConfig, vocab_size: int, bos: int | None, eos: int | None,
              pad: int | None):
    """GPTBigCodeConfig of a starcoder-family model with `vocab_size` (unpadded) rows."""
    from transformers import GPTBigCodeConfig

    check_representable(model)
    config = GPTBigCodeConfig(
        vocab_size=vocab_size, n_positions=model.seq_length, n_embd=model.hidden_size,
        n_layer=model.num_layers, n_head=model.num_attention_heads, n_inner=model.ffn_size,
        activation_function="gelu_pytorch_tanh", resid_pdrop=model.hidden_dropout,
        embd_pdrop=model.hidden_dropout, attn_pdrop=model.attention_dropout,
        layer_norm_epsilon=model.norm_epsilon, initializer_range=model.init_method_std,
        scale_attn_weights=True, multi_query=model.num_query_groups == 1,
        tie_word_embeddings=model.tie_embeddings, bos_token_id=bos, eos_token_id=eos,
        pad_token_id=pad)
    config.architectures = [ARCHITECTURE]
    return config


def model_config(hf) -> ModelConfig:
    """Our ModelConfig of a GPTBigCodeConfig; options with no megatron equivalent -> ConfigError."""
    refuse = []
    if hf.activation_function != "gelu_pytorch_tanh":
        refuse.append(f"activation_function={hf.activation_function!r} (need 'gelu_pytorch_tanh')")
    if not hf.scale_attn_weights:
        refuse.append("scale_attn_weights=false")
    if getattr(hf, "add_cross_attention", False):
        refuse.append("add_cross_attention=true")
    if refuse:
        raise ConfigError(f"{ARCHITECTURE} config option(s) not supported by model.family="
                          f"{FAMILY}: {'; '.join(refuse)}")
    model = ModelConfig(
        family=FAMILY, num_layers=hf.n_layer, hidden_size=hf.n_embd,
        num_attention_heads=hf.n_head, num_query_groups=1 if hf.multi_query else hf.n_head,
        ffn_hidden_size=hf.n_inner if hf.n_inner is not None else 4 * hf.n_embd,
        seq_length=hf.n_positions, vocab_size=hf.vocab_size, norm_epsilon=hf.layer_norm_epsilon,
        init_method_std=hf.initializer_range, hidden_dropout=float(hf.resid_pdrop),
        attention_dropout=float(hf.attn_pdrop), tie_embeddings=bool(hf.tie_word_embeddings))
    model.validate()
    return model


def to_hf(state: dict[str, torch.Tensor], model: ModelConfig, vocab_size: int,
          ) -> dict[str, torch.Tensor]:
    """megatron TP=1/PP=1 state dict -> GPTBigCodeForCausalLM state dict (vocab unpadded)."""
    check_representable(model)
    out = {}
    for name, tensor in state.items():
        if any(re.fullmatch(p, name) for p in IGNORED_MEGATRON):
            continue
        if name in EMBEDDING_KEYS:
            tensor = unpad_rows(tensor, vocab_size)
        out[_hf_name(name)] = tensor.detach().clone()
    return out


def from_hf(state: dict[str, torch.Tensor], model: ModelConfig, padded_vocab: int,
            ) -> dict[str, torch.Tensor]:
    """GPTBigCodeForCausalLM state dict -> megatron TP=1/PP=1 state dict (vocab padded)."""
    check_representable(model)
    inverse = {}
    for name in _megatron_names(model):
        inverse[_hf_name(name)] = name
    out = {}
    for hf_name, tensor in state.items():
        if any(re.fullmatch(p, hf_name) for p in ignored_hf(model)):
            continue
        if hf_name not in inverse:
            raise ConfigError(f"unexpected weight {hf_name} in the {ARCHITECTURE} checkpoint")
        name = inverse[hf_name]
        if name in EMBEDDING_KEYS:
            tensor = pad_rows(tensor, padded_vocab)
        out[name] = tensor.detach().clone()
    return out


def _hf_name(name: str) -> str:
    if name in GLOBAL_NAMES:
        return GLOBAL_NAMES[name]
    m = re.fullmatch(r"decoder\.layers\.(\d+)\.(.+)", name)
    if m and m.group(2) in LAYER_NAMES:
        return f"transformer.h.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"
    raise ExportError(f"megatron weight {name} has no {ARCHITECTURE} counterpart")


def _megatron_names(model: ModelConfig) -> list[str]:
    names = [n for n in GLOBAL_NAMES if not (model.tie_embeddings and n == "output_layer.weight")]
    return names + [f"decoder.layers.{i}.{n}" for i in range(model.num_layers) for n in LAYER_NAMES]
