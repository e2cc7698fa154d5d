"""The memory planner (megatron_rrtf.planning.memory) against what a training step really holds,
on CPU: predicted vs measured per-rank bytes of weights, fp32 gradients, optimizer state and
activations (tests/memory_probe.py: tensors, not RSS), for five shapes and layouts: one process,
full recomputation, TP=2 with sequence parallelism, PP=2 (1F1B), and the RoPE family.
Goal: predicted total within +-25% of measured for every case (the worst rank of each layout).

    python benchmarks/bench_plan_memory.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))     # tests/distributed.py, tests/memory_probe.py

SEQ, VOCAB = 512, 4000
BASE = ["model.num_layers=4", "model.hidden_size=256", "model.num_attention_heads=4",
        "train.micro_batch_size=4", "train.global_batch_size=8", "train.precision=fp32"]
CASES = [
    ("one process, starcoder", 1, []),
    ("one process, recompute full", 1, ["model.recompute=full"]),
    ("TP=2 + sequence parallel", 2, ["parallel.tensor_parallel=2",
                                     "parallel.sequence_parallel=true"]),
    ("PP=2, 1F1B, 2 micro-batches", 2, ["parallel.pipeline_parallel=2"]),
    ("one process, rope (SwiGLU)", 1, ["model.family=rope"]),
]
MB = 2 ** 20


def main() -> int:
    from distributed import run_distributed
    from memory_probe import measure_step

    from megatron_rrtf.config import load_config
    from megatron_rrtf.planning.memory import Layout, estimate

    print(f"shapes: 4 layers, hidden 256, 4 heads (MQA), seq {SEQ}, vocab {VOCAB}, micro-batch 4, "
          "fp32; MB per rank, the worst rank of each layout\n")
    print("| case | weights | gradients | optimizer | activations | total | predicted / "
          "measured |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for name, world, extra in CASES:
        with tempfile.TemporaryDirectory() as run:
            ranks = run_distributed(measure_step, world, run, ["configs/tiny.yaml"],
                                    BASE + extra, SEQ, VOCAB)
        cfg = load_config("configs/tiny.yaml", [f"model.seq_length={SEQ}", *BASE, *extra])
        e = estimate(cfg.model, ranks[0]["padded_vocab"], Layout.of(cfg, world), "fp32",
                     ranks[0]["microbatches"])
        keys = ("weights", "gradients", "optimizer", "activations")
        measured = max(ranks, key=lambda r: sum(r[k] for k in keys))
        total = sum(measured[k] for k in keys)
        ratio = e.total / total
        worst = max(worst, abs(ratio - 1))
        cells = " | ".join(f"{getattr(e, k) / MB:.1f} / {measured[k] / MB:.1f}" for k in keys)
        print(f"| {name} | {cells} | {e.total / MB:.1f} / {total / MB:.1f} | {ratio:.3f} |")
    print(f"\n(cells: predicted / measured) worst |predicted/measured - 1| = {worst:.1%} "
          f"(goal <= 25%: {'ok' if worst <= 0.25 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
