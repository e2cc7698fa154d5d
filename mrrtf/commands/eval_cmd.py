"""`mrrtf eval CHECKPOINT`: held-out perplexity, HumanEval and infilling of one checkpoint (ours,
an HF model dir or a CTranslate2 model dir), as one
results JSON (default RUN/eval/results.json, where `mrrtf compare` reads it). The flags and their
defaults are EvalOptions' fields (megatron_rrtf.eval.checkpoint_eval)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from mrrtf.commands.flags import add_flags, flag_values

HELP = ("evaluate a checkpoint: held-out perplexity/bpb, HumanEval pass@k, infilling (span, "
        "FIM), infill loss / exact match on held-out code")

FIELDS = {
    "tasks": "comma-separated subset of perplexity,humaneval,infill,infill_loss",
    "limit": "only the first N HumanEval problems (infilling tasks come from them too)",
    "num_samples": "sampled completions per problem for pass@k (0: greedy pass@1 only)",
    "ks": "comma-separated k for sampled pass@k (k <= samples kept)",
    "temperature": "temperature of the sampled completions",
    "top_p": "nucleus top-p of the sampled completions",
    "max_new_tokens": "new tokens per completion",
    "batch_size": "rows (prompt x sample) per generate call",
    "infill_tasks": "infilling tasks per mask type, drawn evenly (0: all)",
    "infill_formats": "comma-separated prompt formats: span, fim_psm, fim_spm",
    "infill_loss_tasks": "held-out code holes per mask type for infill loss / exact match",
    "infill_max_middle_tokens": "longest middle (tokens) of a held-out hole",
    "infill_exact_match": "also generate greedy middles for infill exact match",
    "ppl_samples": "held-out samples per domain (none: all)",
    "timeout_s": "sandbox wall-clock seconds per program",
    "workers": "parallel sandboxes (none: the CPU count)",
    "seed": "sampling seed (and infilling task draw)",
    "device": "auto (CUDA in bf16 when present, else CPU), cpu, cuda, cuda:N",
    "threads": "torch CPU threads (1 is fastest for tiny models on a shared CPU)",
}
FLAGS = {"num_samples": "--samples", "timeout_s": "--timeout"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from megatron_rrtf.eval.checkpoint_eval import EvalOptions

    p.add_argument("checkpoint", help="run dir, step dir (exported once to "
                                      "RUN/eval/hf_step_X), HF model dir or CTranslate2 model "
                                      "dir (mrrtf export --format ct2)")
    p.add_argument("--out", default=None, help="results JSON (default: RUN/eval/results.json, "
                                               "HF_DIR/eval/results.json for an HF dir)")
    add_flags(p, EvalOptions, FIELDS, FLAGS)


def options_from_args(args: argparse.Namespace, defaults):
    """EvalOptions from the flags `add_flags` made over `defaults`; --infill-tasks 0 = all."""
    values = flag_values(args, defaults, FIELDS, FLAGS)
    values["infill_tasks"] = values["infill_tasks"] or None
    return dataclasses.replace(defaults, **values)


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.eval.checkpoint_eval import (
        EvalOptions,
        default_results_path,
        evaluate_checkpoint,
        resolve_checkpoint,
        write_results,
    )

    options = options_from_args(args, EvalOptions())
    resolve_checkpoint(args.checkpoint)  # a bad path fails here, before any work
    out = args.out or default_results_path(args.checkpoint)
    results = evaluate_checkpoint(args.checkpoint, options)
    write_results(results, out)
    print(json.dumps(results["summary"], indent=1))
    print(f"step {results['step']}, {results['wall_time_s']:.0f} s -> {out}")
    return 0
