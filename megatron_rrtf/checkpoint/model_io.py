"""Model weights <-> megatron dist_checkpointing directories (any TP/PP layout, resharded on load).

A checkpoint step directory holds `model/` (this module), `optimizer/`, `meta.json` and
`config.yaml` (see megatron_rrtf.checkpoint.manager). Saving the model's sharded state dict lets a
checkpoint written with TP=2/PP=2 load into TP=1/PP=1 (export) and vice versa.
"""

from __future__ import annotations

from pathlib import Path

import torch
from megatron.core import dist_checkpointing

from megatron_rrtf.errors import CheckpointError

MODEL_SUBDIR = "model"


def _sharded(model_chunks: list[torch.nn.Module]) -> dict:
    if len(model_chunks) == 1:
        return {"model": model_chunks[0].sharded_state_dict()}
    return {f"model{i}": m.sharded_state_dict() for i, m in enumerate(model_chunks)}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Strip megatron DDP / Float16Module wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def save_model(model_chunks: list[torch.nn.Module] | torch.nn.Module, step_dir: str | Path) -> Path:
    """Write every rank's shards of the model into `step_dir/model` (collective call)."""
    chunks = model_chunks if isinstance(model_chunks, list) else [model_chunks]
    out = Path(step_dir) / MODEL_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(_sharded([unwrap(m) for m in chunks]), str(out))
    return out


def load_model(model_chunks: list[torch.nn.Module] | torch.nn.Module, step_dir: str | Path) -> None:
    """Load `step_dir/model` into the given model, whatever layout it was saved with."""
    chunks = model_chunks if isinstance(model_chunks, list) else [model_chunks]
    src = Path(step_dir) / MODEL_SUBDIR
    if not (src / "metadata.json").is_file():
        raise CheckpointError(f"{src} is not a complete model checkpoint (no metadata.json); "
                              "point at a step directory written by mrrtf, e.g. RUN/checkpoints/"
                              "step_00000100")
    modules = [unwrap(m) for m in chunks]
    state = dist_checkpointing.load(_sharded(modules), str(src))
    if len(modules) == 1:
        modules[0].load_state_dict(state["model"], strict=True)
    else:
        for i, m in enumerate(modules):
            m.load_state_dict(state[f"model{i}"], strict=True)
