"""Train, checkpoint and logging sections: the optimisation schedule and what a run writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_rrtf.errors import ConfigError


@dataclass
class TrainConfig:
    micro_batch_size: int = 4
    global_batch_size: int = 8
    """= micro_batch_size x gradient-accumulation steps x data-parallel size."""
    train_steps: int = 100
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    lr_decay_style: Literal["cosine", "linear", "constant"] = "cosine"
    lr_decay_steps: int | None = None
    """None: decay over train_steps."""
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    seed: int = 1234
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on CUDA, fp32 on CPU. bf16/fp16 keep fp32 main weights, optimizer state and
    gradient accumulation (megatron's mixed precision); fp16 adds dynamic loss scaling."""
    initial_loss_scale: float = 65536.0
    """fp16 only: the dynamic loss scale to start from."""
    min_loss_scale: float = 1.0
    loss_scale_window: int = 1000
    """fp16 only: steps without overflow before the scale doubles."""
    hysteresis: int = 2
    """fp16 only: overflows tolerated before the scale halves (each overflow skips its step)."""
    eval_interval: int = 0
    """Held-out evaluation every N steps (0 = off)."""
    eval_batches: int = 4
    max_nonfinite_steps: int = 5
    """Stop the run after this many consecutive NaN/Inf losses or gradients (each is skipped)."""
    exit_interval: int | None = None
    """Save and stop at the first step divisible by this (time-sliced cluster jobs); the next
    invocation resumes from it. None = run to train_steps."""

    def validate(self) -> None:
        for name in ("micro_batch_size", "global_batch_size", "train_steps",
                     "max_nonfinite_steps", "eval_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be >= 1")
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                f"train.global_batch_size={self.global_batch_size} is not divisible by "
                f"train.micro_batch_size={self.micro_batch_size}"
            )
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"train.lr={self.lr} / train.min_lr={self.min_lr}: need lr > 0 and "
                              "0 <= min_lr <= lr")
        if self.exit_interval is not None and self.exit_interval < 1:
            raise ConfigError(f"train.exit_interval={self.exit_interval} must be >= 1 or null")
        if self.warmup_steps < 0 or self.eval_interval < 0:
            raise ConfigError("train.warmup_steps and train.eval_interval must be >= 0")
        if self.lr_decay_steps is not None and self.lr_decay_steps < 1:
            raise ConfigError(f"train.lr_decay_steps={self.lr_decay_steps} must be >= 1 or null")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ConfigError("train.adam_beta1 and train.adam_beta2 must be in [0, 1)")
        if not 0 < self.min_loss_scale <= self.initial_loss_scale:
            raise ConfigError(f"train.min_loss_scale={self.min_loss_scale} / "
                              f"train.initial_loss_scale={self.initial_loss_scale}: need "
                              "0 < min_loss_scale <= initial_loss_scale")
        if self.loss_scale_window < 1 or self.hysteresis < 1:
            raise ConfigError("train.loss_scale_window and train.hysteresis must be >= 1")
        if self.weight_decay < 0 or self.clip_grad < 0:
            raise ConfigError("train.weight_decay and train.clip_grad must be >= 0 (0 = off)")


@dataclass
class CheckpointConfig:
    save_interval: int = 0
    """Save every N steps (0 = only at the end and on SIGTERM/SIGINT)."""
    keep_last: int = 3
    load: str | None = "auto"
    """auto: resume from <run_dir>/checkpoints/latest when present; a path: load that; null: fresh."""
    save_on_signal: bool = True
    init_from: str | None = None
    """Start from these model weights only (a step or run directory, e.g. one written by
    `mrrtf import` or a pretraining run) when the run has no checkpoint of its own to resume:
    fresh optimizer, schedule and data order. Ignored once the run has saved a checkpoint."""

    def validate(self) -> None:
        if self.save_interval < 0:
            raise ConfigError(f"checkpoint.save_interval={self.save_interval} must be >= 0")
        if self.keep_last < 1:
            raise ConfigError(f"checkpoint.keep_last={self.keep_last} must be >= 1")


@dataclass
class LoggingConfig:
    run_dir: str = "runs/default"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "megatron-rrtf"
    run_name: str | None = None
    """None: the run directory's name."""
    progress_bar: bool = True

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("logging.run_dir must be a non-empty path")
