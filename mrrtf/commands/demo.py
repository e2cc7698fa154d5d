"""`mrrtf demo`: the tiny end-to-end run on the built-in corpus, on CPU.

preprocess (built-in corpus -> tokenizer -> indexed datasets) -> pretrain the tiny MQA model with
CodeGen2's causal+span mixture, stopping at a mid-run checkpoint -> resume to the end -> plots
-> RRTF on the demo problem family (align/demo.py): held-out pass@1 before, after RRTF and after
SFT-only on the same data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "tiny end-to-end run on the built-in corpus (CPU, a few minutes)"

DATA_CONFIG = "data/builtin.yaml"
MODEL_CONFIG = "tiny.yaml"
OBJECTIVE_CONFIG = "objectives/codegen2_mix.yaml"
"""Names under the project's configs/ (megatron_rrtf.config.bundled), found from any directory."""
DEMO_OUT, PRETRAIN_DIR, RRTF_DIR = "demo_out", "pretrain", "rrtf"
"""`mrrtf demo` writes OUT/pretrain and OUT/rrtf; `mrrtf rrtf demo` starts from the former."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from align.demo import DEMO_SEED

    p.add_argument("--out", default=DEMO_OUT, help=f"where the run directories go (OUT/"
                                                   f"{PRETRAIN_DIR}, OUT/{RRTF_DIR})")
    p.add_argument("--steps", type=int, default=300, help="pretraining steps")
    p.add_argument("--no-rrtf", action="store_true", help="stop after pretraining (skip [4/4])")
    p.add_argument("--rrtf-seed", type=int, default=DEMO_SEED,
                   help="seed of the RRTF stage (demo data, sampling, training order)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (pretraining)")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.config import load_config
    from megatron_rrtf.config.bundled import bundled_config
    from megatron_rrtf.data.preprocess import preprocess
    from megatron_rrtf.training.plots import plot_runs, read_run_metrics
    from pretrain.run import run_pretrain

    t_start = time.time()
    out = Path(args.out)
    run_dir = out / PRETRAIN_DIR
    data_path = bundled_config(DATA_CONFIG)
    print(f"[1/4] preprocessing the built-in corpus ({data_path})", flush=True)
    data_config = load_config([data_path])
    preprocess(data_config)
    tokenizer = Path(data_config.data.output_dir) / "tokenizer.model"

    half = args.steps // 2
    overrides = [f"data.tokenizer={tokenizer}", f"train.train_steps={args.steps}",
                 f"train.exit_interval={half}", "train.eval_interval=50",
                 f"checkpoint.save_interval={half}", f"logging.run_dir={run_dir}",
                 "logging.run_name=demo-tiny-codegen2-mix", *args.overrides]
    config = load_config([bundled_config(MODEL_CONFIG), data_path,
                          bundled_config(OBJECTIVE_CONFIG)], overrides)
    print(f"[2/4] pretraining the tiny model to step {half}, then stopping at the checkpoint",
          flush=True)
    first = run_pretrain(config)
    print(f"      stopped: {json.dumps(first)}", flush=True)
    print(f"[2/4] resuming from {first['checkpoint']} to step {args.steps}", flush=True)
    second = run_pretrain(config)
    print(f"[3/4] plotting into {run_dir / 'plots'}", flush=True)
    plots = plot_runs([run_dir], run_dir / "plots")

    records = read_run_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    print("\nloss by step:", ", ".join(f"{r['step']}: {r['loss']:.3f}"
                                        for r in train[:: max(1, len(train) // 10)]))
    if evals:
        print("held-out loss:", {k: round(v, 3) for k, v in evals[-1].items()
                                 if k.startswith("eval/")})
    print(f"run directory: {run_dir} (config.yaml, metrics.jsonl, checkpoints/, plots/)")
    print(f"plots: {', '.join(str(p) for p in plots)}")
    if second["status"] != "completed":
        return 1
    if not args.no_rrtf:
        from align.demo import run_rrtf_demo, seeds_summary

        rrtf_out = out / RRTF_DIR
        print(f"[4/4] RRTF on the demo problem family (configs/rrtf/tiny_demo.yaml) into "
              f"{rrtf_out}", flush=True)
        result = run_rrtf_demo(run_dir, rrtf_out, seed=args.rrtf_seed)
        print(f"\nheld-out pass@1 (greedy, %), seed {args.rrtf_seed}:")
        print(seeds_summary([result]), end="")
        print(f"full table: {rrtf_out / f'seed_{args.rrtf_seed}' / 'eval.md'}")
    print(f"demo finished in {time.time() - t_start:.0f} s")
    return 0
