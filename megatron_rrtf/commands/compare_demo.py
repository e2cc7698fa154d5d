"""`mrrtf compare-demo`: the CodeGen2-style objective comparison, tiny and on CPU.

preprocess the built-in corpus -> pretrain four tiny runs that differ only in the objective
mixture (same model, data, steps, seed) -> `mrrtf eval` each (held-out perplexity, HumanEval and
infilling, with limits that fit a CPU) -> `mrrtf compare` into one report. Runs that already
finished are not retrained (pretraining resumes from `latest` and stops at once), so a crashed
demo picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "train 4 tiny runs differing only in objective mixture, evaluate and compare them (CPU)"

DATA_CONFIG = "configs/data/builtin.yaml"
MODEL_CONFIG = "configs/tiny.yaml"
RUNS = {  # run name -> objective mixture config
    "causal": "configs/objectives/causal.yaml",
    "causal+span": "configs/objectives/codegen2_mix.yaml",
    "causal+fim": "configs/objectives/causal_fim.yaml",
    "causal+prefix_lm": "configs/objectives/causal_prefix_lm.yaml",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="compare_out", help="runs go to OUT/runs, the report to "
                                                        "OUT/report")
    p.add_argument("--steps", type=int, default=400, help="pretraining steps per run")
    p.add_argument("--limit", type=int, default=40, help="HumanEval problems evaluated")
    p.add_argument("--samples", type=int, default=10, help="sampled completions per problem "
                                                           "for pass@10")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--infill-tasks", type=int, default=60,
                   help="infilling tasks per mask type (drawn evenly from the problems)")
    p.add_argument("--stage", choices=["all", "train"], default="all",
                   help="train: stop after pretraining")
    p.add_argument("overrides", nargs="*", help="key=value config overrides for every run")


def train_runs(out: Path, steps: int, overrides: list[str]) -> dict[str, Path]:
    """Preprocess, then pretrain each mixture (skipped when its run already completed)."""
    from megatron_rrtf.config import load_config
    from megatron_rrtf.data.preprocess import preprocess
    from megatron_rrtf.parallel.init import destroy_parallel
    from pretrain.run import run_pretrain

    data_config = load_config([DATA_CONFIG])
    preprocess(data_config)
    tokenizer = Path(data_config.data.output_dir) / "tokenizer.model"
    run_dirs = {}
    for i, (name, objective) in enumerate(RUNS.items(), 1):
        run_dir = out / "runs" / name
        run_dirs[name] = run_dir
        config = load_config([MODEL_CONFIG, DATA_CONFIG, objective], [
            f"data.tokenizer={tokenizer}", f"train.train_steps={steps}",
            f"train.eval_interval={max(steps // 8, 1)}", f"checkpoint.save_interval={steps}",
            f"logging.run_dir={run_dir}", f"logging.run_name=compare-{name}",
            "logging.wandb_mode=disabled", *overrides])
        t0 = time.time()
        print(f"[train {i}/{len(RUNS)}] {name} ({objective}), {steps} steps", flush=True)
        try:
            result = run_pretrain(config)
        finally:
            destroy_parallel()
        print(f"      {result['status']} in {time.time() - t0:.0f} s", flush=True)
    return run_dirs


def run(args: argparse.Namespace) -> int:
    t_start = time.time()
    out = Path(args.out)
    run_dirs = train_runs(out, args.steps, list(args.overrides))
    if args.stage == "train":
        print(f"trained {len(run_dirs)} runs in {time.time() - t_start:.0f} s")
        return 0
    from megatron_rrtf.eval.checkpoint_eval import EvalOptions, evaluate_checkpoint, write_results
    from megatron_rrtf.eval.compare import write_report

    options = EvalOptions(limit=args.limit, num_samples=args.samples,
                          max_new_tokens=args.max_new_tokens, infill_tasks=args.infill_tasks)
    for i, (name, run_dir) in enumerate(run_dirs.items(), 1):
        t0 = time.time()
        print(f"[eval {i}/{len(run_dirs)}] {name}", flush=True)
        results = evaluate_checkpoint(run_dir, options)
        write_results(results, run_dir / "eval" / "results.json")
        print(f"      {time.time() - t0:.0f} s: {json.dumps(results['summary'])}", flush=True)
    report = write_report(list(run_dirs.values()), out / "report",
                          note=f"`mrrtf compare-demo --steps {args.steps}` on CPU, "
                               f"{time.time() - t_start:.0f} s in all")
    print(f"report: {report}")
    print(f"compare demo finished in {time.time() - t_start:.0f} s")
    return 0
