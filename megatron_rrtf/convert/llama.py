"""model.family=rope <-> transformers LlamaForCausalLM (with num_key_value_heads for MQA/GQA).

Exact because both sides use RMSNorm, SwiGLU without biases and non-interleaved RoPE (megatron's
rotary_interleaved=False is Llama's rotate_half) with rotary_base = rope_theta. Fused tensors:
linear_qkv splits per query group (convert/qkv.py; a naive thirds split is wrong) and linear_fc1
is [gate_proj; up_proj] along its rows.
"""

from __future__ import annotations

import re

import torch

from megatron_rrtf.config import ModelConfig
from megatron_rrtf.convert.qkv import merge_qkv, split_qkv
from megatron_rrtf.convert.vocab import pad_rows, unpad_rows
from megatron_rrtf.errors import ConfigError, ExportError

FAMILY = "rope"
MODEL_TYPE = "llama"
ARCHITECTURE = "LlamaForCausalLM"

GLOBAL_NAMES = {
    "embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "decoder.final_layernorm.weight": "model.norm.weight",
    "output_layer.weight": "lm_head.weight",
}
LAYER_NAMES = {  # decoder.layers.{i}.<megatron> -> model.layers.{i}.<hf>
    "input_layernorm.weight": "input_layernorm.weight",
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
QKV = "self_attention.linear_qkv.weight"
QKV_HF = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")
FC1 = "mlp.linear_fc1.weight"
FC1_HF = ("mlp.gate_proj.weight", "mlp.up_proj.weight")
IGNORED_MEGATRON = [r".*\._extra_state"]
"""TransformerEngine/fp8 metadata slots (None with megatron's local layer spec)."""
IGNORED_HF = [r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq"]
"""RoPE frequency buffers (recomputed from rope_theta); lm_head.weight when tied."""
EMBEDDING_KEYS = ("embedding.word_embeddings.weight", "output_layer.weight")


def ignored_hf(model: ModelConfig) -> list[str]:
    return IGNORED_HF + ([r"lm_head\.weight"] if model.tie_embeddings else [])


def check_representable(model: ModelConfig) -> None:
    if model.family != FAMILY:
        raise ExportError(f"model.family={model.family!r} does not map to {ARCHITECTURE}")
    if float(model.rotary_base) != int(model.rotary_base):
        raise ExportError(f"model.rotary_base={model.rotary_base} is not an integer: megatron's "
                          "GPTModel truncates it, so Llama's rope_theta could not match")


def hf_config(model: ModelConfig, vocab_size: int, bos: int | None, eos: int | None,
              pad: int | None):
    """LlamaConfig of a rope-family model with `vocab_size` (unpadded) rows."""
    from transformers import LlamaConfig

    check_representable(model)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=model.hidden_size, intermediate_size=model.ffn_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups, head_dim=model.kv_channels,
        hidden_act="silu", max_position_embeddings=model.seq_length,
        initializer_range=model.init_method_std, rms_norm_eps=model.norm_epsilon,
        tie_word_embeddings=model.tie_embeddings, attention_bias=False, mlp_bias=False,
        attention_dropout=model.attention_dropout,
        rope_parameters={"rope_type": "default", "rope_theta": float(int(model.rotary_base))},
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    config.architectures = [ARCHITECTURE]
    return config


def model_config(hf) -> ModelConfig:
    """Our ModelConfig of a LlamaConfig; options with no megatron equivalent -> ConfigError."""
    refuse = []
    rope = dict(getattr(hf, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        refuse.append(f"rope_scaling/rope_parameters.rope_type={rope.get('rope_type')!r} "
                      "(only plain RoPE)")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        refuse.append(f"partial_rotary_factor={rope['partial_rotary_factor']} (only 1.0)")
    theta = rope.get("rope_theta", 10000.0)
    if float(theta) != int(theta):
        refuse.append(f"rope_theta={theta} (megatron takes an integer rotary base)")
    if hf.hidden_act != "silu":
        refuse.append(f"hidden_act={hf.hidden_act!r} (need 'silu')")
    if hf.attention_bias:
        refuse.append("attention_bias=true")
    if getattr(hf, "mlp_bias", False):
        refuse.append("mlp_bias=true")
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    if head_dim * hf.num_attention_heads != hf.hidden_size:
        refuse.append(f"head_dim={head_dim} (need hidden_size/num_attention_heads)")
    if (getattr(hf, "pretraining_tp", 1) or 1) != 1:
        refuse.append(f"pretraining_tp={hf.pretraining_tp} (need 1)")
    if refuse:
        raise ConfigError(f"{ARCHITECTURE} config option(s) not supported by model.family="
                          f"{FAMILY}: {'; '.join(refuse)}")
    model = ModelConfig(
        family=FAMILY, num_layers=hf.num_hidden_layers, hidden_size=hf.hidden_size,
        num_attention_heads=hf.num_attention_heads,
        num_query_groups=hf.num_key_value_heads or hf.num_attention_heads,
        ffn_hidden_size=hf.intermediate_size, seq_length=hf.max_position_embeddings,
        vocab_size=hf.vocab_size, rotary_base=float(theta), norm_epsilon=hf.rms_norm_eps,
        init_method_std=hf.initializer_range,
        attention_dropout=float(hf.attention_dropout or 0.0),
        tie_embeddings=bool(hf.tie_word_embeddings))
    model.validate()
    return model


def to_hf(state: dict[str, torch.Tensor], model: ModelConfig, vocab_size: int,
          ) -> dict[str, torch.Tensor]:
    """megatron TP=1/PP=1 state dict -> LlamaForCausalLM state dict (vocab unpadded)."""
    check_representable(model)
    heads, groups, hd = model.num_attention_heads, model.num_query_groups, model.kv_channels
    out = {}
    for name, tensor in state.items():
        if any(re.fullmatch(p, name) for p in IGNORED_MEGATRON):
            continue
        tensor = tensor.detach()
        if name in GLOBAL_NAMES:
            if name in EMBEDDING_KEYS:
                tensor = unpad_rows(tensor, vocab_size)
            out[GLOBAL_NAMES[name]] = tensor.clone()
            continue
        m = re.fullmatch(r"decoder\.layers\.(\d+)\.(.+)", name)
        if not m:
            raise ExportError(f"megatron weight {name} has no {ARCHITECTURE} counterpart")
        prefix, rest = f"model.layers.{m.group(1)}.", m.group(2)
        if rest == QKV:
            for hf_name, part in zip(QKV_HF, split_qkv(tensor, heads, groups, hd)):
                out[prefix + hf_name] = part
        elif rest == FC1:
            gate, up = tensor.chunk(2, dim=0)
            out[prefix + FC1_HF[0]], out[prefix + FC1_HF[1]] = gate.clone(), up.clone()
        elif rest in LAYER_NAMES:
            out[prefix + LAYER_NAMES[rest]] = tensor.clone()
        else:
            raise ExportError(f"megatron weight {name} has no {ARCHITECTURE} counterpart")
    return out


def from_hf(state: dict[str, torch.Tensor], model: ModelConfig, padded_vocab: int,
            ) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM state dict -> megatron TP=1/PP=1 state dict (vocab padded)."""
    check_representable(model)
    heads, groups, hd = model.num_attention_heads, model.num_query_groups, model.kv_channels
    state = {k: v for k, v in state.items()
             if not any(re.fullmatch(p, k) for p in ignored_hf(model))}
    inverse_global = {v: k for k, v in GLOBAL_NAMES.items()}
    out, used = {}, set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise ConfigError(f"the {ARCHITECTURE} checkpoint lacks weight {key}")
        used.add(key)
        return state[key].detach()

    for hf_name, name in inverse_global.items():
        if model.tie_embeddings and name == "output_layer.weight":
            continue
        tensor = take(hf_name)
        out[name] = pad_rows(tensor, padded_vocab) if name in EMBEDDING_KEYS else tensor.clone()
    for i in range(model.num_layers):
        hp, mp = f"model.layers.{i}.", f"decoder.layers.{i}."
        for mname, hname in LAYER_NAMES.items():
            out[mp + mname] = take(hp + hname).clone()
        out[mp + QKV] = merge_qkv(*(take(hp + n) for n in QKV_HF), heads, groups, hd)
        out[mp + FC1] = torch.cat([take(hp + n) for n in FC1_HF], dim=0)
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise ConfigError(f"unexpected weight {unexpected[0]} in the {ARCHITECTURE} checkpoint "
                          f"({len(unexpected)} in all)")
    return out
