"""Build megatron-core's GPTModel for one of the two model families, with our core attention.

Family options are chosen so each maps exactly onto a Hugging Face class (MEGATRON_NOTES.md):
  starcoder -> GPTBigCodeForCausalLM: learned absolute positions, LayerNorm, GELU(tanh), biases.
  rope      -> LlamaForCausalLM: RoPE (non-interleaved), RMSNorm, SwiGLU, no biases.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_decoder_block_spec,
    get_gpt_layer_local_spec,
)
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)

from megatron_rrtf.config import ModelConfig, ParallelConfig, RunConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.model import recompute
from megatron_rrtf.model.attention import choose_core_attention
from megatron_rrtf.model.norms import SequenceParallelNorm


def resolve_dtype(precision: str) -> torch.dtype:
    """`auto` -> bf16 on CUDA, fp32 on CPU."""
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _transformer_engine_imports() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_spec(model: ModelConfig) -> str:
    """`model.spec` -> "te" or "local"; asking for te where it cannot run is a ConfigError."""
    if model.spec == "local":
        return "local"
    cuda, te = torch.cuda.is_available(), _transformer_engine_imports()
    usable = cuda and te
    if model.spec == "te" and not usable:
        raise ConfigError(
            "model.spec=te needs CUDA and Transformer Engine (pip install 'megatron-rrtf[gpu]'); "
            f"here CUDA is {'present' if cuda else 'absent'} and "
            f"transformer_engine {'imports' if te else 'does not import'}"
            "; use model.spec=auto or local")
    return "te" if usable else "local"


def transformer_config(model: ModelConfig, parallel: ParallelConfig,
                       precision: str = "auto") -> TransformerConfig:
    dtype = resolve_dtype(precision)
    on_cpu = not torch.cuda.is_available()
    full = model.recompute == "full"
    family = dict(
        starcoder=dict(normalization="LayerNorm", add_bias_linear=True, gated_linear_unit=False,
                       activation_func=partial(F.gelu, approximate="tanh")),
        rope=dict(normalization="RMSNorm", add_bias_linear=False, gated_linear_unit=True,
                  activation_func=F.silu),
    )[model.family]
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        ffn_hidden_size=model.ffn_size,
        kv_channels=model.kv_channels,
        layernorm_epsilon=model.norm_epsilon,
        init_method_std=model.init_method_std,
        hidden_dropout=model.hidden_dropout,
        attention_dropout=model.attention_dropout,
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline,
        sequence_parallel=parallel.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu_initialization=on_cpu,
        recompute_granularity=None if model.recompute == "none" else model.recompute,
        recompute_method=model.recompute_method if full else None,
        recompute_num_layers=model.recompute_num_layers if full else None,
        tp_comm_overlap=parallel.tp_comm_overlap,
        # gloo matches a batch of isend/irecv between two ranks by order, not by role: in the
        # interleaved schedule an activation and a same-shaped gradient can trade places
        # (measured: losses off by 5e-4 from the third micro-batch). Separate calls on CPU.
        batch_p2p_comm=not on_cpu,
        # Fusions need apex / TransformerEngine / CUDA kernels; the plain paths are exact.
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        rotary_interleaved=False,
        **family,
    )


def block_spec(model: ModelConfig, tconfig: TransformerConfig,
               vp_stage: int | None = None) -> TransformerBlockSubmodules:
    """The layers of this rank's pipeline chunk and the final norm.

    local: megatron's local layer spec with norms that support sequence parallelism
    (model.norms); te: megatron's Transformer Engine spec (fused norm + linear). In both the
    core-attention slot holds ours (model.attention), chosen by device."""
    normalization = "RMSNorm" if model.family == "rope" else "LayerNorm"
    core = choose_core_attention(model.attention_backend)
    if resolve_spec(model) == "te":
        spec = get_gpt_decoder_block_spec(tconfig, use_transformer_engine=True,
                                          normalization=normalization, vp_stage=vp_stage)
        layers, final_norm = [copy.deepcopy(layer) for layer in spec.layer_specs], spec.layer_norm
    else:
        layer = copy.deepcopy(get_gpt_layer_local_spec(normalization=normalization))
        layer.submodules.input_layernorm = SequenceParallelNorm
        layer.submodules.pre_mlp_layernorm = SequenceParallelNorm
        layers = [layer] * get_num_layers_to_build(tconfig, vp_stage=vp_stage)
        final_norm = SequenceParallelNorm
    if core is not None:
        for layer in layers:
            layer.submodules.self_attention.submodules.core_attention = core
    return TransformerBlockSubmodules(layer_specs=layers, layer_norm=final_norm)


class PositionedGPTModel(GPTModel):
    """megatron's GPTModel, with rotary embeddings that follow the position ids it is given.

    megatron-core computes RoPE angles for positions 0..s-1 whatever position_ids say (learned
    absolute positions do follow them). With packed documents positions restart at 0 per
    document, so each token's angle is looked up by its own position id: [s, b, 1, d] instead
    of [s, 1, 1, d], which megatron's unfused RoPE broadcasts per batch row."""

    def _preprocess(self, input_ids, position_ids, *args, **kwargs):
        out = super()._preprocess(input_ids, position_ids, *args, **kwargs)
        rotary = out[1]
        if self.position_embedding_type == "rope" and rotary is not None \
                and position_ids is not None:
            per_token = rotary[:, 0, 0][position_ids.t()].unsqueeze(2)     # [s, b, 1, d]
            out = (out[0], per_token, *out[2:])
        return out


def build_gpt_model(config: RunConfig, vocab_size: int, pre_process: bool = True,
                    post_process: bool = True, vp_stage: int | None = None,
                    on_meta: bool = False) -> GPTModel:
    """The GPTModel for this rank's pipeline stage; `vocab_size` is the padded vocabulary.

    on_meta: parameters on the meta device, uninitialised (CPU only): any size builds in
    seconds, for checking that a layout builds and counting what each rank holds."""
    if on_meta:
        from megatron_rrtf.parallel import cpu_compat

        with cpu_compat.allocate_on_meta():
            return _build(config, vocab_size, pre_process, post_process, vp_stage, on_meta=True)
    return _build(config, vocab_size, pre_process, post_process, vp_stage)


def _build(config: RunConfig, vocab_size: int, pre_process: bool, post_process: bool,
           vp_stage: int | None, on_meta: bool = False) -> GPTModel:
    m = config.model
    tconfig = transformer_config(m, config.parallel, config.train.precision)
    if on_meta:
        tconfig.use_cpu_initialization = False    # (the CPU path allocates on CPU explicitly)
        tconfig.perform_initialization = False
    model = PositionedGPTModel(
        config=tconfig,
        transformer_layer_spec=block_spec(m, tconfig, vp_stage),
        vocab_size=vocab_size,
        max_sequence_length=m.seq_length,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=m.tie_embeddings,
        position_embedding_type="learned_absolute" if m.family == "starcoder" else "rope",
        rotary_base=int(m.rotary_base),
        vp_stage=vp_stage,
    )
    recompute.install(model)
    return model
