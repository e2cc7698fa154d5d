"""`mrrtf eval CHECKPOINT`: held-out perplexity, HumanEval and infilling of one checkpoint, as one
results JSON (default RUN/eval/results.json, where `mrrtf compare` reads it)."""

from __future__ import annotations

import argparse
import json

from mrrtf.commands.arglists import csv_ints, csv_items

HELP = "evaluate a checkpoint: held-out perplexity/bpb, HumanEval pass@k, infilling (span, FIM)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run dir, step dir (exported once to "
                                      "RUN/eval/hf_step_X) or HF model dir")
    p.add_argument("--tasks", default="perplexity,humaneval,infill",
                   help="comma-separated subset of perplexity,humaneval,infill")
    p.add_argument("--out", default=None, help="results JSON (default: RUN/eval/results.json, "
                                               "HF_DIR/eval/results.json for an HF dir)")
    p.add_argument("--limit", type=int, default=None, help="only the first N HumanEval problems "
                                                           "(infilling tasks come from them too)")
    p.add_argument("--samples", type=int, default=10,
                   help="sampled completions per problem for pass@k (0: greedy pass@1 only)")
    p.add_argument("--ks", default="1,10", help="comma-separated k for sampled pass@k (k <= n)")
    p.add_argument("--temperature", type=float, default=0.8, help="for the sampled completions")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--infill-tasks", type=int, default=100,
                   help="infilling tasks per mask type, drawn evenly (0: all)")
    p.add_argument("--infill-formats", default="span,fim_psm,fim_spm")
    p.add_argument("--ppl-samples", type=int, default=None,
                   help="held-out samples per domain (default: all)")
    p.add_argument("--timeout", type=float, default=5.0, help="sandbox seconds per program")
    p.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: CPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest for tiny models on a shared CPU)")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.eval.checkpoint_eval import (
        EvalOptions,
        default_results_path,
        evaluate_checkpoint,
        resolve_checkpoint,
        write_results,
    )

    options = EvalOptions(tasks=csv_items(args.tasks), limit=args.limit,
                          num_samples=args.samples, ks=csv_ints(args.ks, "--ks"),
                          temperature=args.temperature, top_p=args.top_p,
                          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          infill_tasks=args.infill_tasks or None,
                          infill_formats=csv_items(args.infill_formats),
                          ppl_samples=args.ppl_samples,
                          timeout_s=args.timeout, workers=args.workers, seed=args.seed,
                          device=args.device, threads=args.threads)
    resolve_checkpoint(args.checkpoint)  # a bad path fails here, before any work
    out = args.out or default_results_path(args.checkpoint)
    results = evaluate_checkpoint(args.checkpoint, options)
    write_results(results, out)
    print(json.dumps(results["summary"], indent=1))
    print(f"step {results['step']}, {results['wall_time_s']:.0f} s -> {out}")
    return 0
