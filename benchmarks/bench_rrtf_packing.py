"""Claim: packing K candidates of a prompt into one row (shared prompt, block mask) trains at
>= 2x the tokens/s of one padded row per candidate, with the same per-candidate log-probs.

Setup: K=8 candidates per prompt, prompt 60-200 tokens, responses 20-400 tokens (uniform), our
megatron-core GPTModel (StarCoder family, MQA, SDPA core attention taking the [R, 1, S, S] block
mask), log-probs through the RRTF training path (align.train.candidate_logprobs_tp, megatron's
vocab-parallel cross entropy). Each step is forward + backward of the summed candidate log-probs
for one prompt. Tokens/s counts the same useful tokens for both layouts:
sum over candidates of (prompt + response), i.e. what the candidates mean, not padding. The
claim line divides by this process's CPU seconds (robust on a shared machine); wall-clock
throughput is printed below it.

    PYTHONPATH=. python benchmarks/bench_rrtf_packing.py [--max-len 1024] [--threads 1] [--prompts 4]
prints `ours X, baseline Y, ratio Z` (ours = packed, baseline = padded).
"""

from __future__ import annotations

import argparse
import time

import torch

from align.train import candidate_logprobs_tp
from megatron_rrtf.config import ParallelConfig, load_config
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.parallel.init import process_groups, set_seed
from megatron_rrtf.rrtf.packing import CandidateGroup, pack_candidates, pad_candidates


def build_model(vocab: int, dim: int, layers: int, max_pos: int):
    cfg = load_config("configs/tiny.yaml", [f"model.hidden_size={dim}", f"model.num_layers={layers}",
                                            f"model.seq_length={max_pos}", "model.attention_backend=sdpa"])
    set_seed(0)
    return build_gpt_model(cfg, cfg.model.padded_vocab_size(vocab))


def logprobs(model, batch) -> torch.Tensor:
    fields = dict(pred_row=batch.pred_row, pred_col=batch.pred_col, target=batch.target,
                  candidate=batch.candidate, lengths=batch.lengths)
    return candidate_logprobs_tp(model(batch.tokens, batch.position_ids, batch.attention_mask),
                                 fields)


def make_groups(n: int, k: int, vocab: int, seed: int) -> list[CandidateGroup]:
    g = torch.Generator().manual_seed(seed)

    def ints(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    return [CandidateGroup(torch.randint(1, vocab, (ints(60, 200),), generator=g).tolist(),
                           [torch.randint(1, vocab, (ints(20, 400),), generator=g).tolist()
                            for _ in range(k)])
            for _ in range(n)]


def step(model, batch) -> torch.Tensor:
    logp = logprobs(model, batch)
    logp.sum().backward()
    return logp.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=1024,
                    help="packed row cap, as a training sequence length: a longer group is split "
                         "into length-balanced rows, each repeating the prompt (less O(S^2) "
                         "attention); 0 = one row per prompt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.vocab, args.dim, args.layers, max_pos=1024)
    groups = make_groups(args.prompts, args.k, args.vocab, seed=1)
    useful = sum(len(gr.prompt) * len(gr.responses) + sum(map(len, gr.responses))
                 for gr in groups)
    padded = [pad_candidates([gr]) for gr in groups]     # one prompt per micro-batch, both ways
    packed = [pack_candidates([gr], max_len=args.max_len or None) for gr in groups]

    # Same results: both layouts on the first prompt (fp32; sums of up to 400 log-probs).
    with torch.no_grad():
        a, b = logprobs(model, padded[0]), logprobs(model, packed[0])
    max_diff = float(((a - b).abs() / a.abs().clamp(min=1.0)).max())
    assert max_diff < 1e-5, f"layouts disagree: max relative |diff| = {max_diff}"

    def timed_step(batch) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) for one forward + backward."""
        w0, c0 = time.perf_counter(), time.process_time()
        step(model, batch)
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - w0, time.process_time() - c0

    timed_step(padded[0])                               # warm-up both paths
    timed_step(packed[0])
    # Interleave the two layouts prompt by prompt so load changes on a shared machine hit both.
    wall = {"pad": 0.0, "pack": 0.0}
    cpu = {"pad": 0.0, "pack": 0.0}
    for _ in range(args.repeats):
        for pad_batch, pack_batch in zip(padded, packed):
            for name, batch in (("pad", pad_batch), ("pack", pack_batch)):
                w, c = timed_step(batch)
                wall[name] += w
                cpu[name] += c
    slots_pad = sum(b.num_tokens for b in padded)
    slots_pack = sum(b.num_tokens for b in packed)
    print(f"K={args.k}, {args.prompts} prompts, {useful} candidate tokens; computed slots: "
          f"packed {slots_pack}, padded {slots_pad} (ratio {slots_pad / slots_pack:.2f}); "
          f"max relative |logp diff| {max_diff:.2e}")
    useful *= args.repeats
    # CPU seconds of this process do not count time spent waiting for a core, so on a shared
    # machine they measure the work; wall-clock is printed too.
    ours, base = useful / cpu["pack"], useful / cpu["pad"]
    print(f"ours {ours:,.0f} tokens/CPU-s (packed), baseline {base:,.0f} tokens/CPU-s (padded), "
          f"ratio {ours / base:.2f}")
    ours_w, base_w = useful / wall["pack"], useful / wall["pad"]
    print(f"wall-clock: ours {ours_w:,.0f} tokens/s, baseline {base_w:,.0f} tokens/s, "
          f"ratio {ours_w / base_w:.2f}")

if __name__ == "__main__":
    with process_groups(ParallelConfig(), seed=0):
        main()
