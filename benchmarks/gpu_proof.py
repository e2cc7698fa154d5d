"""The checks only a GPU can run, as one script that prints one Markdown table (commit it under
docs/ with the date and the GPU's name when a device is lent). On a machine without CUDA it says
so and exits 0.

Rows:
  * document attention, correctness: flash-attn's variable-length path (packed documents with
    prefix-LM prefixes, model.documents) against SDPA with the dense mask, bf16, max |diff|;
  * document attention, speed: forward + backward of a ~100M-parameter model at seq 2048 with
    documents kept apart (varlen flash-attn) vs plain causal flash-attn over the whole sample;
    goal <= 1.05x (issue: document-aware packing).

    python benchmarks/gpu_proof.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_document_attention import packed_doc_ids  # noqa: E402
from common import median_seconds  # noqa: E402


def attention_correctness(rows: list[str]) -> None:
    import torch.nn.functional as F
    from flash_attn import flash_attn_varlen_func

    from megatron_rrtf.model.documents import DocumentAttention, varlen_document_attention

    b, s, h, g, d = 2, 2048, 16, 1, 128
    doc_ids = packed_doc_ids(b)
    prefix = np.zeros_like(doc_ids, dtype=bool)
    prefix[:, :100] = True                        # a prefix-LM prefix in each row's first document
    layout = DocumentAttention.build(doc_ids, prefix, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    k, v = (torch.randn(b, s, g, d, device="cuda", dtype=torch.bfloat16, generator=gen)
            for _ in range(2))
    ours = varlen_document_attention(q, k, v, layout, flash_attn_varlen_func, d ** -0.5)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2).float(), k.transpose(1, 2).float(),
                                         v.transpose(1, 2).float(), attn_mask=~layout.dense(),
                                         scale=d ** -0.5, enable_gqa=True).transpose(1, 2)
    diff = (ours.float() - ref).abs().max().item()
    rows.append(f"| varlen document attention vs dense-mask SDPA (fp32 ref), bf16 | max abs "
                f"diff {diff:.3g} | < 2e-2 | {'ok' if diff < 2e-2 else 'FAIL'} |")


def attention_speed(rows: list[str], repeats: int) -> None:
    from megatron_rrtf.config import load_config
    from megatron_rrtf.model.build import build_gpt_model
    from megatron_rrtf.model.documents import DocumentAttention

    seq, vocab, batch = 2048, 32000, 4
    cfg = load_config("configs/tiny.yaml", [
        "model.num_layers=12", "model.hidden_size=768", "model.num_attention_heads=12",
        f"model.seq_length={seq}", "model.attention_backend=flash", "train.precision=bf16"])
    model = build_gpt_model(cfg, cfg.model.padded_vocab_size(vocab)).cuda()
    tokens = torch.randint(0, vocab, (batch, seq), device="cuda")
    doc_ids = packed_doc_ids(batch)
    times = {}
    for mode in ("packed", "separate"):
        layout = DocumentAttention.build(doc_ids, np.zeros_like(doc_ids, dtype=bool),
                                         mode == "separate", device="cuda")

        def step(layout=layout):
            model.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                model(tokens, layout.position_ids, layout.model_mask(),
                      labels=tokens).float().mean().backward()
            torch.cuda.synchronize()

        times[mode] = median_seconds(step, repeats=repeats, warmup=3)
    ratio = times["separate"] / times["packed"]
    rows.append(f"| fwd+bwd ~100M, seq {seq}, batch {batch}: documents apart (varlen) vs "
                f"causal over the sample | {times['separate'] * 1e3:.1f} ms vs "
                f"{times['packed'] * 1e3:.1f} ms = {ratio:.3f}x | <= 1.05x | "
                f"{'ok' if ratio <= 1.05 else 'over'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to prove here (the CPU tests cover the same code paths "
              "with a reference kernel)")
        return 0
    from megatron_rrtf.config import ParallelConfig
    from megatron_rrtf.parallel.init import process_groups

    rows = ["| check | measured | goal | result |", "|---|---|---|---|"]
    with process_groups(ParallelConfig(), seed=0):
        attention_correctness(rows)
        attention_speed(rows, args.repeats)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
