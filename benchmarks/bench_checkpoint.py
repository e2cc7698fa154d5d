"""Checkpoint save and load time (model + optimizer + meta via dist_checkpointing) vs model size,
for the tiny and ~100M-parameter MQA configs, on CPU. The baseline is torch.save/torch.load of the
same model and optimizer state dicts (one file, no resharding).

Run: python benchmarks/bench_checkpoint.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from megatron_rrtf.checkpoint.manager import CheckpointManager  # noqa: E402
from megatron_rrtf.config import (
    ParallelConfig,  # noqa: E402
    load_config,  # noqa: E402
)
from megatron_rrtf.parallel.init import process_groups, set_seed  # noqa: E402
from megatron_rrtf.training.setup import build_model_state  # noqa: E402

SHAPES = {"tiny": (2, 128, 4, 256, 8000), "100m": (12, 768, 12, 512, 32000)}


def main() -> None:
    for size, (layers, hidden, heads, seq, vocab) in SHAPES.items():
        cfg = load_config("configs/tiny.yaml", [
            f"model.num_layers={layers}", f"model.hidden_size={hidden}",
            f"model.num_attention_heads={heads}", f"model.seq_length={seq}"])
        set_seed(0)
        state = build_model_state(cfg, cfg.model.padded_vocab_size(vocab))
        model = state.model[0]
        loss = model(torch.zeros(1, seq, dtype=torch.long), torch.arange(seq)[None], None,
                     labels=torch.zeros(1, seq, dtype=torch.long)).sum()
        loss.backward()
        model.finish_grad_sync()
        state.optimizer.step()  # materialise Adam state
        params = sum(p.numel() for p in model.parameters())
        with tempfile.TemporaryDirectory() as tmp:
            mgr = CheckpointManager(tmp, keep_last=10)
            mgr.save(0, state, {"warmup": True}, cfg)  # first save starts writer processes
            t0 = time.perf_counter()
            step_dir = mgr.save(1, state, {"consumed_tokens": 0}, cfg)
            save_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            mgr.load(step_dir, state)
            load_s = time.perf_counter() - t0
            size_mb = sum(p.stat().st_size for p in step_dir.rglob("*") if p.is_file()) / 2**20
            plain = Path(tmp) / "plain.pt"
            t0 = time.perf_counter()
            torch.save({"model": model.state_dict(), "opt": state.optimizer.state_dict()}, plain)
            base_save = time.perf_counter() - t0
            t0 = time.perf_counter()
            torch.load(plain, weights_only=False)
            base_load = time.perf_counter() - t0
            shutil.rmtree(step_dir)
        print(f"{size}: {params / 1e6:.1f}M parameters, checkpoint {size_mb:.0f} MB", flush=True)
        report(f"  save (s, lower is better), {size}", save_s, base_save, "s",
               higher_is_better=False)
        report(f"  load (s, lower is better), {size}", load_s, base_load, "s",
               higher_is_better=False)


if __name__ == "__main__":
    with process_groups(ParallelConfig(), seed=0):
        main()
