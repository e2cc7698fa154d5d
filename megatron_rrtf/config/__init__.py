"""One typed config tree for every stage, loaded from YAML with `a.b=value` overrides and validated
before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_rrtf.config.data import DataConfig
from megatron_rrtf.config.loader import deep_merge, from_dict, parse_override, read_yaml, to_dict
from megatron_rrtf.config.model import ModelConfig
from megatron_rrtf.config.objectives import ObjectivesConfig
from megatron_rrtf.config.parallel import ParallelConfig
from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.config.train import CheckpointConfig, LoggingConfig, TrainConfig
from megatron_rrtf.errors import ConfigError

__all__ = [
    "RunConfig", "ModelConfig", "ParallelConfig", "DataConfig", "ObjectivesConfig", "TrainConfig",
    "CheckpointConfig", "LoggingConfig", "RRTFConfig", "load_config", "to_dict",
]


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    rrtf: RRTFConfig = field(default_factory=RRTFConfig)

    def validate(self, world_size: int | None = None) -> RunConfig:
        """Check every section, then the cross-section rules; raise ConfigError naming the keys."""
        for section in (self.model, self.parallel, self.data, self.objectives, self.train,
                        self.checkpoint, self.logging, self.rrtf):
            section.validate()
        m, p, t = self.model, self.parallel, self.train
        if m.num_attention_heads % p.tensor_parallel:
            raise ConfigError(
                f"model.num_attention_heads={m.num_attention_heads} is not divisible by "
                f"parallel.tensor_parallel={p.tensor_parallel}"
            )
        if m.num_query_groups % p.tensor_parallel and p.tensor_parallel % m.num_query_groups:
            raise ConfigError(
                f"model.num_query_groups={m.num_query_groups} must divide or be a multiple of "
                f"parallel.tensor_parallel={p.tensor_parallel}"
            )
        if m.make_vocab_size_divisible_by % p.tensor_parallel:
            raise ConfigError(
                f"model.make_vocab_size_divisible_by={m.make_vocab_size_divisible_by} is not a "
                f"multiple of parallel.tensor_parallel={p.tensor_parallel}"
            )
        if m.ffn_size % p.tensor_parallel:
            raise ConfigError(f"model.ffn_hidden_size={m.ffn_size} is not divisible by "
                              f"parallel.tensor_parallel={p.tensor_parallel}")
        layers_per_chunk = p.pipeline_parallel * (p.virtual_pipeline or 1)
        if m.num_layers % layers_per_chunk:
            raise ConfigError(
                f"model.num_layers={m.num_layers} is not divisible by parallel.pipeline_parallel="
                f"{p.pipeline_parallel} x parallel.virtual_pipeline={p.virtual_pipeline or 1}"
            )
        if m.recompute == "full" and m.recompute_method == "block" \
                and m.recompute_num_layers > m.num_layers // layers_per_chunk:
            raise ConfigError(
                f"model.recompute_num_layers={m.recompute_num_layers} exceeds the "
                f"{m.num_layers // layers_per_chunk} layers of a pipeline chunk "
                "(model.recompute_method=block)")
        if p.sequence_parallel and m.seq_length % p.tensor_parallel:
            raise ConfigError(f"model.seq_length={m.seq_length} must be divisible by "
                              f"parallel.tensor_parallel={p.tensor_parallel} with sequence_parallel")
        if world_size is not None:
            dp = p.data_parallel(world_size)
            if t.global_batch_size % (t.micro_batch_size * dp):
                raise ConfigError(
                    f"train.global_batch_size={t.global_batch_size} is not divisible by "
                    f"train.micro_batch_size={t.micro_batch_size} x data-parallel size {dp} "
                    f"(world {world_size} / (tensor {p.tensor_parallel} x pipeline "
                    f"{p.pipeline_parallel}))"
                )
            micro = t.global_batch_size // (t.micro_batch_size * dp)
            if p.virtual_pipeline and micro % p.pipeline_parallel:
                raise ConfigError(
                    f"the interleaved pipeline (parallel.virtual_pipeline={p.virtual_pipeline}) "
                    f"runs micro-batches in groups of parallel.pipeline_parallel="
                    f"{p.pipeline_parallel}, but a step has {micro} (train.global_batch_size="
                    f"{t.global_batch_size} / (train.micro_batch_size={t.micro_batch_size} x "
                    f"data-parallel {dp})); make it a multiple of {p.pipeline_parallel}")
        return self

    def num_microbatches(self, world_size: int) -> int:
        dp = self.parallel.data_parallel(world_size)
        return self.train.global_batch_size // (self.train.micro_batch_size * dp)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(paths: list[str | Path] | str | Path, overrides: list[str] = ()) -> RunConfig:
    """Merge YAML files in order, apply `a.b=value` overrides, build and validate the tree."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    data: dict[str, Any] = {}
    for path in paths:
        data = deep_merge(data, read_yaml(path))
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    config = from_dict(RunConfig, data)
    return config.validate()
