"""SDPA core attention vs megatron-core's unfused local DotProductAttention, on CPU.

Forward+backward of the same model (same weights, same batch) with each backend; the claim is
that SDPA, our CPU default, is faster. Run: python benchmarks/bench_attention.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_seconds, report  # noqa: E402

from megatron_rrtf.config import (
    ParallelConfig,  # noqa: E402
    load_config,  # noqa: E402
)
from megatron_rrtf.model.build import build_gpt_model  # noqa: E402
from megatron_rrtf.parallel.init import process_groups, set_seed  # noqa: E402


def step_time(backend: str, seq: int, batch: int, hidden: int, heads: int) -> float:
    cfg = load_config("configs/tiny.yaml", [f"model.attention_backend={backend}",
                                            f"model.seq_length={seq}", f"model.hidden_size={hidden}",
                                            f"model.num_attention_heads={heads}"])
    set_seed(0)
    model = build_gpt_model(cfg, 8064)
    tokens = torch.randint(0, 8000, (batch, seq), generator=torch.Generator().manual_seed(0))
    pos = torch.arange(seq)[None].expand(batch, -1)

    def step():
        model.zero_grad(set_to_none=True)
        model(tokens, pos, None, labels=tokens).float().mean().backward()

    return median_seconds(step)


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for seq, batch, hidden, heads in [(256, 8, 128, 4), (1024, 2, 256, 8)]:
        local = step_time("local", seq, batch, hidden, heads)
        sdpa = step_time("sdpa", seq, batch, hidden, heads)
        report(f"fwd+bwd step, seq {seq} batch {batch} hidden {hidden} (s/step, lower is better)",
               sdpa, local, "s", higher_is_better=False)


if __name__ == "__main__":
    with process_groups(ParallelConfig(), seed=0):
        main()
