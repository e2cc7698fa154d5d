"""Parallel section: how the model and batch are split over processes."""

from __future__ import annotations

from dataclasses import dataclass

from megatron_rrtf.errors import ConfigError


@dataclass
class ParallelConfig:
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    virtual_pipeline: int | None = None
    """Model chunks per pipeline rank (interleaved 1F1B); None = plain 1F1B."""
    sequence_parallel: bool = False
    use_distributed_optimizer: bool = False
    """Shard optimizer state (fp32 main weights and Adam moments) over data-parallel ranks
    (ZeRO-1, megatron's distributed optimizer): gradients are reduce-scattered, parameters
    all-gathered after the step. Checkpoints load at any other DP/TP/PP layout."""
    overlap_grad_reduce: bool = False
    """GPU only: overlap the data-parallel gradient reduction with the backward pass."""
    overlap_param_gather: bool = False
    """GPU only, with use_distributed_optimizer: overlap the parameter all-gather with the next
    forward pass."""
    tp_comm_overlap: bool = False
    """GPU only, with model.spec=te and sequence_parallel: overlap tensor-parallel
    communication with GEMMs (Transformer Engine's userbuffers)."""
    distributed_backend: str = "auto"
    """auto: nccl on CUDA, gloo on CPU."""

    def validate(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel"):
            if getattr(self, name) < 1:
                raise ConfigError(f"parallel.{name}={getattr(self, name)} must be >= 1")
        if self.virtual_pipeline is not None and self.virtual_pipeline < 1:
            raise ConfigError(f"parallel.virtual_pipeline={self.virtual_pipeline} must be >= 1 or null")
        if self.virtual_pipeline and self.pipeline_parallel == 1:
            raise ConfigError("parallel.virtual_pipeline needs parallel.pipeline_parallel > 1")
        if self.sequence_parallel and self.tensor_parallel == 1:
            raise ConfigError("parallel.sequence_parallel=true needs parallel.tensor_parallel > 1")
        if self.overlap_param_gather and not self.use_distributed_optimizer:
            raise ConfigError("parallel.overlap_param_gather=true needs "
                              "parallel.use_distributed_optimizer=true")
        if self.tp_comm_overlap and not self.sequence_parallel:
            raise ConfigError("parallel.tp_comm_overlap=true needs parallel.sequence_parallel=true")
        if self.distributed_backend not in ("auto", "nccl", "gloo"):
            raise ConfigError(f"parallel.distributed_backend={self.distributed_backend!r} is not one "
                              "of 'auto', 'nccl', 'gloo'")

    def data_parallel(self, world_size: int) -> int:
        model_parallel = self.tensor_parallel * self.pipeline_parallel
        if world_size % model_parallel:
            raise ConfigError(
                f"world size {world_size} is not divisible by parallel.tensor_parallel="
                f"{self.tensor_parallel} x parallel.pipeline_parallel={self.pipeline_parallel}"
            )
        return world_size // model_parallel
