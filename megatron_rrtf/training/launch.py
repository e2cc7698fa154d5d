"""What every training stage (pretrain/, align/) does around its loop, in one place: process
groups for the run (set up and torn down by `training_run`), the config checked against the world
size, the tokenizer checked against the model, and the run's resolved config.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
import yaml

from megatron_rrtf.config import RunConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.parallel.init import process_groups


def load_run_tokenizer(config: RunConfig):
    """data.tokenizer, checked against model.vocab_size."""
    from megatron_rrtf.tokenizer.loader import load_tokenizer

    if not config.data.tokenizer:
        raise ConfigError("data.tokenizer is not set: point it at a sentencepiece .model or an HF "
                          "tokenizer directory (mrrtf preprocess writes one)")
    tokenizer = load_tokenizer(config.data.tokenizer)
    if config.model.vocab_size is not None and config.model.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={config.model.vocab_size} is smaller than the "
                          f"tokenizer's {tokenizer.vocab_size} ({config.data.tokenizer})")
    return tokenizer


@contextmanager
def training_run(config: RunConfig) -> Iterator:
    """Process groups for `config.parallel` (torn down on exit), the config validated against
    the world size; yields the run's tokenizer."""
    with process_groups(config.parallel, config.train.seed) as (_, world):
        config.validate(world_size=world)
        yield load_run_tokenizer(config)


def write_run_config(config: RunConfig) -> None:
    """RUN/ and RUN/config.yaml, written by rank 0 while every other rank waits (a collective
    call under torch.distributed): on return, every rank on every node finds both."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        run_dir = Path(config.logging.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if dist.is_initialized():
        dist.barrier()
