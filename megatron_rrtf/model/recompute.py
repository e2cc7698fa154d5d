"""Activation recomputation with megatron's switches, carried out by torch's non-reentrant
checkpoint.

megatron-core decides *what* to recompute: `recompute_granularity="full"` sends the decoder
through `TransformerBlock._checkpointed_forward` (layers grouped by `recompute_method` and
`recompute_num_layers`), `"selective"` sends attention through
`Attention._checkpointed_attention_forward` (core attention only). Its checkpoint function is the
reentrant one, which saves its inputs with `save_for_backward` and so accepts tensors only; our
attention mask is a `DocumentAttention` (model.documents). `install` keeps megatron's dispatch and
grouping and swaps only the checkpoint call for `torch.utils.checkpoint(use_reentrant=False)`,
which carries any Python object through and restores the CPU/CUDA RNG state for dropout.
"""

from __future__ import annotations

from types import MethodType

import torch
from torch.utils.checkpoint import checkpoint


def _checkpoint(fn, *args):
    return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=True)


def _full_recompute(self, hidden_states, attention_mask, context, context_mask, rotary_pos_emb,
                    attention_bias, packed_seq_params, use_inner_quantization_context,
                    padding_mask=None):
    """TransformerBlock._checkpointed_forward with the same uniform/block grouping."""

    def layers(start: int, end: int):
        def run(hidden_states, context):
            for index in range(start, end):
                hidden_states, context = self._get_layer(index)(
                    hidden_states=hidden_states, attention_mask=attention_mask, context=context,
                    context_mask=context_mask, rotary_pos_emb=rotary_pos_emb,
                    attention_bias=attention_bias, inference_context=None,
                    packed_seq_params=packed_seq_params, padding_mask=padding_mask)
            return hidden_states, context

        return run

    count, group = self.num_layers_per_pipeline_rank, self.config.recompute_num_layers
    if self.config.recompute_method == "uniform":
        for start in range(0, count, group):
            hidden_states, context = _checkpoint(layers(start, min(start + group, count)),
                                                 hidden_states, context)
    else:  # block: the first `group` layers of this chunk are recomputed, the rest kept
        for index in range(count):
            run = layers(index, index + 1)
            if index < group:
                hidden_states, context = _checkpoint(run, hidden_states, context)
            else:
                hidden_states, context = run(hidden_states, context)
    return hidden_states


def _core_attention_recompute(self, query, key, value, attention_mask, rotary_pos_emb=None,
                              attn_mask_type=None, attention_bias=None, packed_seq_params=None):
    """Attention._checkpointed_attention_forward: recompute core attention in the backward."""
    mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type

    def run(query, key, value):
        return self.core_attention(query, key, value, attention_mask, attn_mask_type=mask_type,
                                   attention_bias=attention_bias,
                                   packed_seq_params=packed_seq_params)

    return _checkpoint(run, query, key, value)


def install(model: torch.nn.Module) -> None:
    """Route a GPTModel's recomputation (if its config asks for any) through `_checkpoint`."""
    granularity = model.config.recompute_granularity
    if granularity == "full":
        model.decoder._checkpointed_forward = MethodType(_full_recompute, model.decoder)
    elif granularity == "selective":
        for layer in model.decoder.layers:
            attention = layer.self_attention
            attention._checkpointed_attention_forward = MethodType(_core_attention_recompute,
                                                                   attention)
