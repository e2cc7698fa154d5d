"""`mrrtf humaneval`: sample completions from a Hugging Face model directory and score them on
HumanEval in the sandbox; writes per-task results and pass@k as JSON."""

from __future__ import annotations

import argparse
import json
import logging

from mrrtf.commands.arglists import csv_ints

HELP = "sample a HF model on HumanEval and score the completions in the sandbox (pass@k)"

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="Hugging Face model directory")
    p.add_argument("--out", required=True, help="JSON file for pass@k and per-task outcomes")
    p.add_argument("--samples", type=int, default=1, help="completions per problem (n)")
    p.add_argument("--ks", default="1,10,100", help="comma-separated k for pass@k (k <= n kept)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    p.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.eval.generate import HUMANEVAL_STOP, SamplingConfig, generate, load_model
    from megatron_rrtf.eval.humaneval import evaluate_completions, load_problems

    ks = csv_ints(args.ks, "--ks")
    problems = load_problems()
    if args.limit is not None:
        problems = dict(list(problems.items())[: args.limit])
    model, tokenizer = load_model(args.model, device=args.device)
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, num_samples=args.samples,
                            batch_size=args.batch_size, stop=HUMANEVAL_STOP, seed=args.seed)
    prompts = [p["prompt"] for p in problems.values()]
    samples = generate(prompts, model, tokenizer, config, progress=True)
    completions = dict(zip(problems, samples))
    report = evaluate_completions(completions, ks=ks, problems=problems, workers=args.workers,
                                  progress=True)
    for task_id, runs in report["tasks"].items():
        for run_result, completion in zip(runs, completions[task_id]):
            run_result["completion"] = completion
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    summary = ", ".join(f"pass@{k} {v:.4f}" for k, v in report["pass@k"].items())
    print(f"HumanEval ({report['num_tasks']} problems, n={args.samples}): {summary} -> {args.out}")
    return 0
