"""Build the model chunks for this rank, wrap them in megatron DDP, and make the optimizer and
learning-rate schedule (megatron-core's, on CPU through the compat mode)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.distributed.finalize_model_grads import finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer.module import Float16Module

from megatron_rrtf.config import ParallelConfig, RunConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.model.build import build_gpt_model, resolve_dtype


@dataclass
class ModelState:
    """Everything a training step touches besides the data."""

    model: list[torch.nn.Module]          # DDP-wrapped chunks (one unless virtual pipeline)
    optimizer: object                     # megatron MegatronOptimizer
    scheduler: OptimizerParamScheduler
    dtype: torch.dtype


def sub_optimizers(optimizer) -> list:
    """The optimizers inside megatron's optimizer: a ChainedOptimizer's parts, or itself."""
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _one_or_list(funcs: list):
    """megatron's config hooks take one function per model chunk, or the function itself."""
    return funcs if len(funcs) > 1 else funcs[0]


def build_model_chunks(config: RunConfig, vocab_size: int) -> list[torch.nn.Module]:
    """This rank's GPTModel chunk(s), with pre/post-process set by its pipeline position."""
    vp = config.parallel.virtual_pipeline
    chunks = []
    for i in range(vp or 1):
        vp_stage = i if vp else None
        first = parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
        last = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
        model = build_gpt_model(config, vocab_size, pre_process=first, post_process=last,
                                vp_stage=vp_stage)
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        chunks.append(model)
    return chunks


def refuse_gpu_only_options(parallel: ParallelConfig) -> None:
    """Overlap options need CUDA streams (and TE userbuffers for TP overlap); on CPU/gloo the
    collectives are synchronous, so they would do nothing or fail deep inside megatron."""
    if torch.cuda.is_available():
        return
    asked = [name for name in ("overlap_grad_reduce", "overlap_param_gather", "tp_comm_overlap")
             if getattr(parallel, name)]
    if asked:
        raise ConfigError(
            f"parallel.{asked[0]}=true needs CUDA: communication overlap runs collectives on "
            "separate CUDA streams (tp_comm_overlap also needs Transformer Engine); on CPU/gloo "
            "they are synchronous. Set it to false here")


def build_model_state(config: RunConfig, vocab_size: int, lr_decay_steps: int | None = None,
                      ) -> ModelState:
    """Model chunks -> (bf16 wrapper) -> megatron DDP -> optimizer -> LR/WD scheduler."""
    t = config.train
    p = config.parallel
    dtype = resolve_dtype(t.precision)
    refuse_gpu_only_options(p)
    chunks = build_model_chunks(config, vocab_size)
    tconfig = chunks[0].config
    tconfig.calculate_per_token_loss = True   # loss = sum over the global batch / its tokens
    if dtype != torch.float32:
        chunks = [Float16Module(tconfig, m) for m in chunks]
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,             # fp32 gradient accumulation in every precision
        overlap_grad_reduce=p.overlap_grad_reduce,
        overlap_param_gather=p.overlap_param_gather,
        use_distributed_optimizer=p.use_distributed_optimizer,
    )
    model = [DistributedDataParallel(tconfig, ddp_config, m, disable_bucketing=(i > 0))
             for i, m in enumerate(chunks)]
    for m in model:
        m.broadcast_params()  # identical replicas across data-parallel ranks
    tconfig.no_sync_func = _one_or_list([m.no_sync for m in model])
    if p.overlap_grad_reduce:  # as megatron's training loop: start each chunk's reduction early
        tconfig.grad_sync_func = _one_or_list([m.start_grad_sync for m in model])
    if p.overlap_param_gather:
        tconfig.param_sync_func = _one_or_list([m.start_param_sync for m in model])
    tconfig.finalize_model_grads_func = finalize_model_grads

    opt_config = OptimizerConfig(
        optimizer="adam", lr=t.lr, min_lr=t.min_lr, weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, adam_eps=t.adam_eps,
        clip_grad=t.clip_grad, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        params_dtype=dtype, use_distributed_optimizer=p.use_distributed_optimizer,
        overlap_param_gather=p.overlap_param_gather,
        # fp16: dynamic loss scaling (loss_scale=None); bf16 and fp32 run unscaled
        initial_loss_scale=t.initial_loss_scale, min_loss_scale=t.min_loss_scale,
        loss_scale_window=t.loss_scale_window, hysteresis=t.hysteresis,
    )
    # megatron's default param groups already exempt biases and norm weights (1-D) from decay.
    optimizer = get_megatron_optimizer(opt_config, model)
    # fp16: the schedule multiplies each micro-batch's loss by the current loss scale before
    # backward (the optimizer unscales); without it the unscaled gradients come out 1/scale.
    tconfig.grad_scale_func = optimizer.scale_loss
    decay = lr_decay_steps or t.lr_decay_steps or t.train_steps
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=t.lr, min_lr=t.min_lr,
        lr_warmup_steps=t.warmup_steps, lr_decay_steps=max(decay, t.warmup_steps + 1),
        lr_decay_style=t.lr_decay_style, start_wd=t.weight_decay, end_wd=t.weight_decay,
        wd_incr_steps=decay, wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=True, override_opt_param_scheduler=False,
    )
    return ModelState(model=model, optimizer=optimizer, scheduler=scheduler, dtype=dtype)
