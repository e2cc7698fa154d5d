"""The training loop: one screen per step, parallel machinery behind megatron-core's schedules.

A stage (pretrain/, align/) supplies a BatchSource (this rank's micro-batches for each step, with a
resumable state) and a forward step `(batch, model) -> (output, loss_func)` whose loss_func returns
`(loss_sum, num_tokens, {stat_name: tensor([sum, count])})`. Loss is summed over the whole global
batch and divided by its token count (megatron's per-token loss), so micro-batching, gradient
accumulation and data parallelism give the same update.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_rrtf.checkpoint.manager import CheckpointManager
from megatron_rrtf.config import RunConfig
from megatron_rrtf.errors import MrrtfError
from megatron_rrtf.training.flops import peak_tflops
from megatron_rrtf.training.metrics import MetricsLogger
from megatron_rrtf.training.setup import ModelState, sub_optimizers

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
ForwardStep = Callable[[Batch, torch.nn.Module], tuple[torch.Tensor, Callable]]


class BatchSource(Protocol):
    def next_microbatches(self, count: int) -> list[Batch]: ...
    def counters(self, batches: list[Batch]) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NonFiniteLossError(MrrtfError):
    """Too many consecutive steps had a NaN/Inf loss or gradient."""


@dataclass
class LoopSpec:
    """What a stage plugs into the loop."""

    source: BatchSource
    forward_step: ForwardStep
    stat_names: list[str]                      # e.g. ["loss", "loss/causal", ...]
    counter_names: list[str] = field(default_factory=list)   # e.g. ["tokens/python_stdlib"]
    eval_sources: dict[str, Callable[[], list[Batch]]] = field(default_factory=dict)
    tokens_per_sample: int = 0
    flops_per_token: float = 0.0
    tokens_counter: str | None = None
    """A counter that measures the step's tokens (else global batch x tokens_per_sample)."""
    micro_batch_rows: int | None = None
    """Rows per micro-batch tensor when it differs from train.micro_batch_size (RRTF packs
    several candidates per row); pipeline stages exchange tensors of this shape."""


class _StopFlag:
    """Set by SIGTERM/SIGINT; checked (and agreed across ranks) once per step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum
        log.warning("received %s: saving a checkpoint after this step, then stopping",
                    signal.Signals(signum).name)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _world_sum(values: list[float]) -> list[float]:
    """Sum a vector over every rank in one collective (float64, on the device NCCL needs)."""
    t = torch.tensor(values, dtype=torch.float64)
    if torch.cuda.is_available():
        t = t.cuda()
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.cpu().tolist()


def _is_loss_reporter() -> bool:
    return (parallel_state.is_pipeline_last_stage(ignore_virtual=True)
            and parallel_state.get_tensor_model_parallel_rank() == 0)


def _is_data_reporter() -> bool:
    return (parallel_state.is_pipeline_first_stage(ignore_virtual=True)
            and parallel_state.get_tensor_model_parallel_rank() == 0)


def _stat_sums(reports: list[dict], names: list[str]) -> list[float]:
    """[sum, count] per stat name over this rank's micro-batch reports, flattened."""
    local = [0.0] * (2 * len(names))
    for report in reports:
        for i, name in enumerate(names):
            if name in report:
                s, c = report[name].double().tolist()
                local[2 * i] += s
                local[2 * i + 1] += c
    return local


def _stat_means(totals: list[float], names: list[str]) -> dict[str, float | None]:
    return {name: (totals[2 * i] / totals[2 * i + 1] if totals[2 * i + 1] else None)
            for i, name in enumerate(names)}


def optimizer_step(optimizer, clip_grad: float, before_update: Callable[[], None]
                   ) -> tuple[bool, float | None, bool]:
    """megatron's optimizer step, split so that a non-finite step changes nothing.

    Non-finite gradients are found by megatron itself, once per step: fp16's loss scaler checks
    for inf/NaN while unscaling (and lowers the scale), and the global gradient norm — one
    reduction, which megatron computes anyway for clipping — is NaN/Inf when any gradient is.
    `before_update` (the LR schedule) runs only when the update happens. Returns (updated,
    grad_norm, overflow), overflow meaning the fp16 loss scaler found inf/NaN."""
    if optimizer.prepare_grads():                  # fp16 overflow: skipped, scale lowered
        return False, None, True
    grad_norm = optimizer.get_grad_norm()
    if not math.isfinite(grad_norm):
        return False, grad_norm, False
    if clip_grad > 0:
        for opt in sub_optimizers(optimizer):
            params = opt.get_parameters()
            if params:
                clip_grad_by_total_norm_fp32(
                    params, clip_grad, grad_norm,
                    opt.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8)
    before_update()
    return bool(optimizer.step_with_ready_grads()), grad_norm, False


class Trainer:
    def __init__(self, config: RunConfig, state: ModelState, spec: LoopSpec):
        self.config = config
        self.state = state
        self.spec = spec
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.num_micro = config.num_microbatches(self.world)
        self.ckpt = CheckpointManager(config.logging.run_dir, config.checkpoint.keep_last)
        self.step = 0
        self.consumed_tokens = 0
        self.consumed_by_counter: dict[str, float] = {n: 0.0 for n in spec.counter_names}
        self.nonfinite_in_a_row = 0
        self.skipped_steps = 0
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.stop = _StopFlag()
        self.stop_requested = False
        self.scaled = config.train.precision == "fp16"

    # ---- checkpoints -------------------------------------------------------------------
    def maybe_resume(self) -> None:
        self.ckpt.clean_partial()
        load = self.config.checkpoint.load
        if load is None:
            return
        path = self.ckpt.latest() if load == "auto" else Path(load)
        if path is None:
            init = self.config.checkpoint.init_from
            if init:
                from megatron_rrtf.checkpoint.manager import resolve_step_dir
                from megatron_rrtf.checkpoint.model_io import load_model

                load_model(self.state.model, resolve_step_dir(init))
                log.info("initialised model weights from %s (fresh optimizer and data order)",
                         init)
            return
        meta = self.ckpt.load(path, self.state)
        self.step = meta["step"]
        self.consumed_tokens = meta["consumed_tokens"]
        self.consumed_by_counter.update(meta.get("counters", {}))
        self.skipped_steps = meta.get("skipped_steps", 0)
        self.spec.source.load_state_dict(meta["data_state"])
        log.info("resumed from %s at step %d", path, self.step)

    def save(self) -> Path:
        meta = dict(consumed_tokens=self.consumed_tokens, counters=self.consumed_by_counter,
                    skipped_steps=self.skipped_steps, data_state=self.spec.source.state_dict())
        return self.ckpt.save(self.step, self.state, meta, self.config)

    # ---- one step ------------------------------------------------------------------------
    def _forward_backward(self, batches: list[Batch], forward_only: bool) -> list[dict]:
        fwd = self.spec.forward_step
        iters = [iter(batches) for _ in self.state.model]
        return get_forward_backward_func()(
            forward_step_func=lambda it, model: fwd(next(it), model),
            data_iterator=iters if len(iters) > 1 else iters[0],
            model=self.state.model, num_microbatches=len(batches),
            seq_length=self.config.model.seq_length,
            micro_batch_size=self.spec.micro_batch_rows or self.config.train.micro_batch_size,
            forward_only=forward_only)

    def _local_stats(self, reports: list[dict]) -> list[float]:
        """This rank's [sum, count] per stat; zeros off the last stage's TP rank 0, so the
        world sum counts each micro-batch once."""
        names = self.spec.stat_names
        return _stat_sums(reports, names) if _is_loss_reporter() else [0.0] * (2 * len(names))

    def _reduce_stats(self, reports: list[dict]) -> dict[str, float | None]:
        return _stat_means(_world_sum(self._local_stats(reports)), self.spec.stat_names)

    def _reduce_step(self, reports: list[dict], counters: dict[str, float]
                     ) -> tuple[dict[str, float | None], list[float]]:
        """The step's loss statistics (last pipeline stage), data counters (first stage) and
        the stop flag (any rank), summed over the world in one collective."""
        stats = self._local_stats(reports)
        counted = [counters.get(n, 0.0) if _is_data_reporter() else 0.0
                   for n in self.spec.counter_names]
        total = _world_sum(stats + counted + [1.0 if self.stop.signum else 0.0])
        self.stop_requested = total[-1] > 0
        return _stat_means(total[:len(stats)], self.spec.stat_names), total[len(stats):-1]

    def train_step(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        batches = self.spec.source.next_microbatches(self.num_micro)
        for chunk in self.state.model:
            chunk.train()
            chunk.zero_grad_buffer()
        self.state.optimizer.zero_grad()
        reports = self._forward_backward(batches, forward_only=False)
        stats, counted = self._reduce_step(reports, self.spec.source.counters(batches))
        names = self.spec.counter_names
        # Advance the schedule before the update, so step k uses lr(k): the first warm-up step
        # trains with max_lr / warmup_steps rather than 0. A skipped step does not advance it.
        updated, grad_norm, overflow = optimizer_step(
            self.state.optimizer, self.config.train.clip_grad,
            before_update=lambda: self.state.scheduler.step(increment=1))
        finite = updated and stats["loss"] is not None and math.isfinite(stats["loss"])
        loss_scale = float(self.state.optimizer.get_loss_scale()) if self.scaled else None
        self.step += 1
        if finite:
            self.nonfinite_in_a_row = 0
        elif overflow and loss_scale > self.config.train.min_loss_scale:
            # fp16's dynamic loss scaling at work: the scaler lowered the scale; not a failure
            self.skipped_steps += 1
            log.info("step %d: fp16 gradient overflow; update skipped, loss scale now %g",
                     self.step, loss_scale)
        else:
            self.nonfinite_in_a_row += 1
            self.skipped_steps += 1
            log.warning("step %d: non-finite loss or gradient (loss=%s); update skipped "
                        "(%d in a row, limit train.max_nonfinite_steps=%d)", self.step,
                        stats["loss"], self.nonfinite_in_a_row, self.config.train.max_nonfinite_steps)
        tokens = self.config.train.global_batch_size * self.spec.tokens_per_sample
        if self.spec.tokens_counter:
            tokens = int(counted[names.index(self.spec.tokens_counter)])
        self.consumed_tokens += tokens
        for n, v in zip(names, counted):
            self.consumed_by_counter[n] += v
        dt = time.perf_counter() - t0
        tflops = self.spec.flops_per_token * tokens / dt / 1e12
        peak = peak_tflops()
        record = dict(kind="train", step=self.step, **stats,
                      lr=self.state.optimizer.param_groups[0]["lr"], grad_norm=grad_norm,
                      skipped=not finite, step_time_s=dt, tokens_per_s=tokens / dt,
                      tflops=tflops, mfu=(tflops / (peak * self.world)) if peak else None,
                      loss_scale=loss_scale,
                      consumed_tokens=self.consumed_tokens,
                      **{f"consumed_{n}": v for n, v in self.consumed_by_counter.items()})
        if self.nonfinite_in_a_row >= self.config.train.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} consecutive steps had a NaN/Inf loss or gradient "
                f"(limit train.max_nonfinite_steps={self.config.train.max_nonfinite_steps}); "
                "lower train.lr, check the data, or raise the limit")
        return record

    def evaluate(self) -> dict[str, Any]:
        record: dict[str, Any] = dict(kind="eval", step=self.step)
        for chunk in self.state.model:
            chunk.eval()
        with torch.no_grad():
            for domain, make_batches in self.spec.eval_sources.items():
                stats = self._reduce_stats(self._forward_backward(make_batches(), True))
                record[f"eval/{domain}/loss"] = stats["loss"]
        return record

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.maybe_resume()
        total = cfg.train.train_steps
        metrics = MetricsLogger(cfg, total, self.step, enabled=self.rank == 0)
        stop = self.stop
        stop.install()
        status, t_start, start_step, last_saved = "completed", time.time(), self.step, None
        try:
            while self.step < total:
                record = self.train_step()
                metrics.log(record)
                if cfg.train.eval_interval and self.step % cfg.train.eval_interval == 0 \
                        and self.spec.eval_sources:
                    metrics.log(self.evaluate())
                interval = cfg.checkpoint.save_interval
                if interval and self.step % interval == 0:
                    last_saved = self.save()
                if self.stop_requested:
                    status = "interrupted"
                    if cfg.checkpoint.save_on_signal and last_saved != self._step_path():
                        last_saved = self.save()
                    break
                exit_every = cfg.train.exit_interval
                if exit_every and self.step % exit_every == 0 and self.step < total:
                    status = "exited"
                    if last_saved != self._step_path():
                        last_saved = self.save()
                    break
            # (a run resumed at its final step has nothing new to save)
            if status == "completed" and self.step > start_step \
                    and last_saved != self._step_path():
                last_saved = self.save()
        finally:
            stop.restore()
            metrics.close()
        summary = dict(status=status, step=self.step, steps_this_run=self.step - start_step,
                       seconds=time.time() - t_start, consumed_tokens=self.consumed_tokens,
                       skipped_steps=self.skipped_steps,
                       checkpoint=str(last_saved) if last_saved else None)
        if self.rank == 0:
            Path(cfg.logging.run_dir, "summary.json").write_text(json.dumps(summary, indent=1))
        if dist.is_initialized():  # no rank exits before the summary exists: a job script reads
            dist.barrier()         # it once every node's processes are gone (docs/cluster.md)
        return summary

    def _step_path(self) -> Path:
        from megatron_rrtf.checkpoint.manager import step_dir_name

        return self.ckpt.root / step_dir_name(self.step)
