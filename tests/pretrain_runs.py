"""Helpers for the pretraining tests: configs over the tiny data fixture, and run bodies that
spawned processes import."""

from __future__ import annotations

import json
from pathlib import Path

from megatron_rrtf.config import RunConfig, load_config

OBJECTIVE_FILE = "configs/objectives/codegen2_mix.yaml"


def sources_json(data_config: RunConfig, weights: dict[str, float] | None = None) -> str:
    """The fixture's sources as a YAML/JSON override value, optionally re-weighted."""
    weights = weights or {}
    return json.dumps([dict(name=s.name, domain=s.domain, language=s.language,
                            weight=weights.get(s.name, s.weight), dir=s.dir, glob=s.glob,
                            files=s.files) for s in data_config.data.sources])


def pretrain_config(data_config: RunConfig, run_dir: Path, *overrides: str,
                    weights: dict[str, float] | None = None) -> RunConfig:
    """The tiny model (hidden 64) on the tiny data fixture's sources, wandb off."""
    d = data_config.data
    sources = sources_json(data_config, weights)
    return load_config(["configs/tiny.yaml", OBJECTIVE_FILE], [
        f"data.tokenizer={d.tokenizer}", f"data.output_dir={d.output_dir}",
        f"data.sources={sources}", f"data.heldout_fraction={d.heldout_fraction}",
        f"model.seq_length={data_config.model.seq_length}", "model.hidden_size=64",
        "train.micro_batch_size=2", "train.global_batch_size=4", "train.warmup_steps=2",
        "train.train_steps=12", "logging.wandb_mode=disabled", "logging.progress_bar=false",
        f"logging.run_dir={run_dir}", *overrides,
    ])


def read_metrics(run_dir: Path, kind: str = "train") -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def run_in_process(config: RunConfig) -> dict:
    """Body for tests/distributed.run_distributed: one rank of a pretraining run."""
    from pretrain.run import run_pretrain

    return run_pretrain(config)
