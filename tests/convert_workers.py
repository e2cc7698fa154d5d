"""Tiny checkpoints for the conversion tests, written in-process or by spawned TP ranks."""

from __future__ import annotations

import zlib
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from megatron.core import parallel_state

from megatron_rrtf.checkpoint.manager import LATEST
from megatron_rrtf.checkpoint.model_io import save_model
from megatron_rrtf.config import load_config
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.parallel.init import process_groups
from megatron_rrtf.tokenizer import load_tokenizer

SEQ = 32
STEP = "step_00000005"


def tiny_config(tokenizer: str | Path, overrides: list[str]):
    return load_config("configs/tiny.yaml", [
        "model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4",
        f"model.seq_length={SEQ}", f"data.tokenizer={tokenizer}", *overrides])


def save_tiny_checkpoint(run_dir: str | Path, tokenizer: str | Path, overrides: list[str],
                         tokens: torch.Tensor, seed: int = 11) -> torch.Tensor:
    """Build a tiny model (any TP), move every weight off its init (biases and norms too), save
    RUN/checkpoints/STEP + latest, and return its full-vocab logits on `tokens` [b, s, padded]."""
    config = tiny_config(tokenizer, overrides)
    with process_groups(config.parallel, seed):
        m = config.model
        padded = m.padded_vocab_for(load_tokenizer(tokenizer).vocab_size)
        model = build_gpt_model(config, padded).eval()
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        with torch.no_grad():
            for name, p in model.named_parameters():
                # TP-sharded weights differ per rank; replicated ones (norms, row-parallel biases)
                # must stay identical on every rank, as training keeps them.
                shard = tp_rank if getattr(p, "tensor_model_parallel", False) else 0
                g = torch.Generator().manual_seed(zlib.crc32(name.encode()) + 7919 * shard + seed)
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        step_dir = Path(run_dir) / "checkpoints" / STEP
        save_model(model, step_dir)
        if not dist.is_initialized() or dist.get_rank() == 0:
            (step_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            (step_dir.parent / LATEST).write_text(STEP + "\n")
        with torch.no_grad():
            pos = torch.arange(tokens.shape[1])[None].expand(tokens.shape[0], -1)
            logits = model(tokens, pos, None)                            # [b, s, padded / tp]
        tp = parallel_state.get_tensor_model_parallel_world_size()
        if tp > 1:
            parts = [torch.empty_like(logits) for _ in range(tp)]
            dist.all_gather(parts, logits.contiguous(),
                            group=parallel_state.get_tensor_model_parallel_group())
            logits = torch.cat(parts, dim=-1)
        if dist.is_initialized():
            dist.barrier()
        return logits


def save_pipeline_checkpoint(run_dir: str | Path, tokenizer: str | Path, overrides: list[str],
                             seed: int = 11) -> dict[str, torch.Tensor]:
    """PP=2, 4 layers: save this stage's perturbed weights; return them under TP=1/PP=1 names."""
    config = tiny_config(tokenizer, overrides + ["model.num_layers=4",
                                                 "parallel.pipeline_parallel=2"])
    with process_groups(config.parallel, seed):
        m = config.model
        padded = m.padded_vocab_for(load_tokenizer(tokenizer).vocab_size)
        model = build_gpt_model(config, padded, pre_process=parallel_state.is_pipeline_first_stage(),
                                post_process=parallel_state.is_pipeline_last_stage())
        offset = parallel_state.get_pipeline_model_parallel_rank() * m.num_layers // 2
        weights = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                parts = name.split(".")
                if name.startswith("decoder.layers."):
                    parts[2] = str(int(parts[2]) + offset)
                name = ".".join(parts)
                g = torch.Generator().manual_seed(zlib.crc32(name.encode()) + seed)
                p.add_(0.05 * torch.randn(p.shape, generator=g))
                weights[name] = p.detach().clone()
        step_dir = Path(run_dir) / "checkpoints" / STEP
        save_model(model, step_dir)
        if dist.get_rank() == 0:
            (step_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        dist.barrier()
        return weights


def save_parallel_checkpoints(tp_cases: list[tuple[str, str, str, list[str]]],
                              pp_case: tuple[str, str, list[str]], tokens: torch.Tensor) -> dict:
    """In each of 2 spawned ranks: save every (name, run_dir, tokenizer, overrides) case with
    TP=2 (returning full-vocab logits), then `pp_case` with PP=2 (returning its weights)."""
    out = {name: save_tiny_checkpoint(run_dir, tokenizer,
                                      overrides + ["parallel.tensor_parallel=2"], tokens)
           for name, run_dir, tokenizer, overrides in tp_cases}
    out["pp2_weights"] = save_pipeline_checkpoint(*pp_case)
    return out
