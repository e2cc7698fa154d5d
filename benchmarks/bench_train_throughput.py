"""Training throughput (tokens/s) and peak memory: our megatron-core MQA model with megatron's DDP
and optimizer vs Hugging Face GPTBigCodeForCausalLM (same shape, batch, torch, AdamW), on CPU.

Each variant runs in its own process so peak RSS is its own. Run:
    python benchmarks/bench_train_throughput.py [--sizes tiny,100m] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {  # name: (layers, hidden, heads, seq, micro batch, vocab)
    "tiny": (2, 128, 4, 256, 8, 8000),
    "100m": (12, 768, 12, 512, 4, 32000),
}


def _ours(layers, hidden, heads, seq, batch, vocab, steps):
    import torch

    from megatron_rrtf.config import load_config
    from megatron_rrtf.parallel.init import process_groups
    from megatron_rrtf.training.setup import build_model_state

    cfg = load_config("configs/tiny.yaml", [
        f"model.num_layers={layers}", f"model.hidden_size={hidden}",
        f"model.num_attention_heads={heads}", f"model.seq_length={seq}",
        f"train.micro_batch_size={batch}", f"train.global_batch_size={batch}"])
    with process_groups(cfg.parallel, 0):
        state = build_model_state(cfg, cfg.model.padded_vocab_size(vocab))
        model = state.model[0]
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(0))
        pos = torch.arange(seq)[None].expand(batch, -1)

        def step():
            model.zero_grad_buffer()
            state.optimizer.zero_grad()
            loss = model(tokens[:, :-1], pos, None, labels=tokens[:, 1:]).float().mean()
            loss.backward()
            model.finish_grad_sync()
            state.optimizer.step()

        return _time(step, steps)


def _hf(layers, hidden, heads, seq, batch, vocab, steps):
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    torch.manual_seed(0)
    config = GPTBigCodeConfig(vocab_size=vocab, n_positions=seq, n_embd=hidden, n_layer=layers,
                              n_head=heads, multi_query=True, activation_function="gelu_pytorch_tanh",
                              attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    model = GPTBigCodeForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    tokens = torch.randint(0, vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(0))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab),
                                                 tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return _time(step, steps)


def _time(step, steps):
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def child(variant: str, size: str, steps: int) -> None:
    layers, hidden, heads, seq, batch, vocab = SHAPES[size]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn = _ours if variant == "ours" else _hf
    seconds = fn(layers, hidden, heads, seq, batch, vocab, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(tokens_per_s=batch * seq / seconds, step_s=seconds,
                          peak_rss_mb=peak / 1024, rss_growth_mb=(peak - base_rss) / 1024)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,100m")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "SIZE"))
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.steps)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import report

    root = Path(__file__).resolve().parents[1]
    for size in args.sizes.split(","):
        results = {}
        for variant in ("ours", "hf"):
            out = subprocess.run([sys.executable, __file__, "--child", variant, size,
                                  "--steps", str(args.steps)], cwd=root, capture_output=True,
                                 text=True, check=True).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])
        ours, hf = results["ours"], results["hf"]
        report(f"train tokens/s, {size} MQA (megatron DDP+optimizer vs HF GPTBigCode+AdamW)",
               ours["tokens_per_s"], hf["tokens_per_s"], "tok/s")
        print(f"  peak RSS: ours {ours['peak_rss_mb']:.0f} MB, GPTBigCode {hf['peak_rss_mb']:.0f} MB",
              flush=True)


if __name__ == "__main__":
    main()
