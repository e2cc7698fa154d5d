"""`mrrtf rrtf`: the RRTF data steps.

  mrrtf rrtf demo-data --out-dir D          demo problems (train/held-out) + a teacher JSONL
  mrrtf rrtf decontaminate --problems P --out O     drop HumanEval overlaps, list them
  mrrtf rrtf evolve --seeds S --teacher-outputs T --out O   Evol-Instruct + filter + dedup
                    (--write-requests R writes the rewrite prompts for an offline teacher)
  mrrtf rrtf sample CONFIG... --problems P --student DIR --out O   student + teacher samples
  mrrtf rrtf rank --problems P --responses R... --out O    sandbox verdicts -> ranked set
  mrrtf rrtf train CONFIG... --ranked R     ranking loss + SFT on megatron-core
  mrrtf rrtf run CONFIG...                  rounds of export -> sample -> rank -> train (resumable)
  mrrtf rrtf eval CONFIG... --problems P --before M --after M   held-out pass@k table
  mrrtf rrtf demo --pretrained DIR --seeds 1,2,3   the CPU demo (RRTF vs SFT-only), per seed
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from mrrtf.commands.arglists import csv_ints, csv_items

HELDOUT_MODES = ("params", "templates")
"""= rrtf.demo_problems.HELDOUT_MODES, not imported so that parsing stays light (numpy)."""

HELP = "RRTF steps: demo-data, decontaminate, evolve, sample, rank, train, run, eval, demo"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="rrtf_command", metavar="STEP", required=True)

    d = sub.add_parser("demo-data", help="write demo problems and a mixed teacher JSONL")
    d.add_argument("--out-dir", required=True)
    d.add_argument("--train", type=int, default=400, help="training problems")
    d.add_argument("--heldout", type=int, default=100, help="held-out problems")
    d.add_argument("--teacher-per-problem", type=int, default=2)
    d.add_argument("--correct-fraction", type=float, default=0.7)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--heldout-mode", choices=HELDOUT_MODES, default="params",
                   help="params: training templates with unseen parameters; templates: "
                        "whole templates never seen in training (harder)")
    d.set_defaults(_step=_demo_data)

    c = sub.add_parser("decontaminate", help="drop problems overlapping HumanEval")
    c.add_argument("--problems", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--ngram", type=int, default=10)
    c.add_argument("--threshold", type=float, default=0.1)
    c.set_defaults(_step=_decontaminate)

    e = sub.add_parser("evolve", help="Evol-Instruct rewrite through a teacher, filter, dedup")
    e.add_argument("--seeds", required=True, help="seed problems JSONL")
    e.add_argument("--out", help="evolved problems JSONL (seeds included)")
    e.add_argument("--teacher-outputs", help='JSONL of {"id": request id, "output": text}')
    e.add_argument("--write-requests", help="write this round's rewrite requests here and stop")
    e.add_argument("--rounds", type=int, default=1)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--near-dup-jaccard", type=float, default=0.8)
    e.add_argument("--teacher-model", help="HF model directory to answer the requests locally")
    e.add_argument("--max-new-tokens", type=int, default=512)
    e.set_defaults(_step=_evolve)

    s = sub.add_parser("sample", help="sample K responses per problem from student + teachers")
    s.add_argument("configs", nargs="+", help="YAML files then key.sub=value overrides")
    s.add_argument("--problems", required=True)
    s.add_argument("--student", help="HF model directory of the student (omit: teachers only)")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(_step=_sample)

    r = sub.add_parser("rank", help="run responses' code in the sandbox and rank per problem")
    r.add_argument("--problems", required=True)
    r.add_argument("--responses", nargs="*", default=[],
                   help='JSONL files, one {"problem_id", "text", "source"} per line')
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=None)
    r.set_defaults(_step=_rank)

    t = sub.add_parser("train", help="train on a ranked set with the ranking loss + SFT "
                                     "(megatron-core; torchrun for TP/PP/DP)")
    t.add_argument("configs", nargs="+", help="YAML files then key.sub=value overrides "
                                              "(checkpoint.init_from= the model to align)")
    t.add_argument("--ranked", required=True, help="ranked JSONL written by `mrrtf rrtf rank`")
    t.set_defaults(_step=_train)

    u = sub.add_parser("run", help="rrtf.rounds rounds of export -> sample -> rank -> train "
                                   "(re-run to resume)")
    u.add_argument("configs", nargs="+", help="YAML files then key.sub=value overrides "
                                              "(checkpoint.init_from= the model to align)")
    u.add_argument("--problems", help="training problems JSONL (default: rrtf.problems)")
    u.add_argument("--seed", type=int, default=0, help="sampling seed")
    u.set_defaults(_step=_run_rounds)

    v = sub.add_parser("eval", help="held-out pass@1 (greedy) and pass@k before/after, one "
                                    "table (Markdown + JSON)")
    v.add_argument("configs", nargs="+", help="YAML files then overrides (prompt template, "
                                              "stop markers, student.max_new_tokens)")
    v.add_argument("--problems", required=True, help="held-out problems JSONL")
    v.add_argument("--before", required=True, help="HF dir, run dir or step dir")
    v.add_argument("--after", required=True, nargs="+", help="HF/run/step dirs (NAME=PATH to "
                                                             "name a column)")
    v.add_argument("--out", required=True, help="output prefix: writes OUT.md and OUT.json")
    v.add_argument("--samples", type=int, default=0, help="n sampled answers for pass@k")
    v.add_argument("--temperature", type=float, default=0.8)
    v.add_argument("--ks", default="1,5", help="comma-separated k (k <= samples kept)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--benchmarks", default="none",
                   help="also score every model on public benchmarks, comma-separated: "
                        "humaneval, infill (as `mrrtf eval`), or none")
    v.add_argument("--humaneval-samples", type=int, default=10,
                   help="sampled HumanEval completions per problem for pass@k (0: greedy only)")
    v.add_argument("--humaneval-limit", type=int, default=None,
                   help="first N HumanEval problems only (default: all 164)")
    v.add_argument("--infill-tasks", type=int, default=100,
                   help="infilling tasks per mask type (0: all, as `mrrtf eval`)")
    v.set_defaults(_step=_eval)

    m = sub.add_parser("demo", help="CPU demo on the tiny pretrained model: held-out pass@1 "
                                    "before / after RRTF / after SFT-only, per seed")
    m.add_argument("--pretrained", default="demo_out/pretrain", help="pretraining run dir")
    m.add_argument("--out", default="demo_out/rrtf")
    m.add_argument("--seeds", default="1", help="comma-separated seeds (data, sampling, "
                                                "training order)")
    m.add_argument("--train", type=int, default=400, help="training problems")
    m.add_argument("--heldout", type=int, default=100, help="held-out problems")
    m.add_argument("--heldout-mode", choices=HELDOUT_MODES, default="params",
                   help="held-out split (see `rrtf demo-data --help`)")
    m.add_argument("--no-sft", action="store_true", help="skip the SFT-only baseline")
    m.add_argument("--no-benchmarks", action="store_true",
                   help="held-out rows only (skip HumanEval and infilling: faster seed sweeps)")
    m.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (1 is much faster on a shared, busy CPU)")
    m.add_argument("overrides", nargs="*", help="key=value overrides of "
                                                "configs/rrtf/tiny_demo.yaml")
    m.set_defaults(_step=_demo)


def run(args: argparse.Namespace) -> int:
    return int(args._step(args) or 0)


def _demo_data(args: argparse.Namespace) -> int:
    from align.demo import write_demo_data

    paths = write_demo_data(Path(args.out_dir), args.train, args.heldout, args.seed,
                            args.teacher_per_problem, args.correct_fraction, args.heldout_mode)
    counts = {name: len(p.read_text().splitlines()) for name, p in paths.items()}
    print(f"wrote {counts['train']} train, {counts['heldout']} held-out problems and "
          f"{counts['teacher']} teacher responses to {args.out_dir}")
    return 0


def _decontaminate(args: argparse.Namespace) -> int:
    from megatron_rrtf.rrtf.decontaminate import NgramIndex, decontaminate
    from megatron_rrtf.rrtf.problems import load_problems, write_problems

    problems, _ = load_problems(args.problems)
    kept, dropped = decontaminate(problems, NgramIndex.humaneval(args.ngram), args.threshold)
    write_problems(args.out, kept)
    for d in dropped:
        print(f"dropped {d.problem_id}: {d.field} overlap {d.overlap:.2f} (e.g. '{d.example}')")
    print(f"kept {len(kept)} of {len(problems)} problems -> {args.out}")
    return 0


def _evolve(args: argparse.Namespace) -> int:
    import numpy as np

    from megatron_rrtf.errors import DataError
    from megatron_rrtf.rrtf.evolve import (
        evolution_requests,
        evolve,
        load_teacher_outputs,
        requests_to_jsonl,
    )
    from megatron_rrtf.rrtf.problems import load_problems, write_problems

    seeds, _ = load_problems(args.seeds)
    if args.write_requests:
        reqs = evolution_requests(seeds, np.random.default_rng(args.seed))
        requests_to_jsonl(args.write_requests, reqs)
        print(f"wrote {len(reqs)} round-1 requests to {args.write_requests}")
        return 0
    if not (args.teacher_outputs or args.teacher_model) or not args.out:
        raise DataError("mrrtf rrtf evolve needs --out and --teacher-outputs or --teacher-model "
                        "(or --write-requests to produce the prompts first)")
    if args.teacher_model:
        from align.sample import hf_generate
        from megatron_rrtf.config.rrtf import SamplingConfig

        gen = hf_generate(args.teacher_model,
                          SamplingConfig(samples=1, max_new_tokens=args.max_new_tokens), ())

        def teacher(prompts):
            return [outs[0] for outs in gen(prompts, 0.0, 1, args.seed)]
    else:
        teacher = load_teacher_outputs(args.teacher_outputs)
    problems, report = evolve(seeds, teacher, args.rounds, args.seed, args.near_dup_jaccard)
    write_problems(args.out, problems)
    print(report.summary())
    return 0


def _sample(args: argparse.Namespace) -> int:
    from align.sample import hf_generate, sample_all, write_responses
    from megatron_rrtf.config import load_config
    from megatron_rrtf.rrtf.problems import load_problems
    from mrrtf.commands.config_cmd import split_configs_and_overrides

    paths, overrides = split_configs_and_overrides(args.configs)
    cfg = load_config(paths, overrides).rrtf
    problems, _ = load_problems(args.problems)
    student = (hf_generate(args.student, cfg.student, cfg.stop_markers)
               if args.student else None)
    records = sample_all(problems, cfg, student, seed=args.seed)
    write_responses(args.out, records)
    print(f"wrote {len(records)} responses for {len(problems)} problems -> {args.out}")
    return 0


def _rank(args: argparse.Namespace) -> int:
    from align.rank import rank_problems, read_responses, write_ranked
    from megatron_rrtf.rrtf.problems import load_problems
    from megatron_rrtf.rrtf.ranking import format_distribution

    problems, _ = load_problems(args.problems)
    extra = read_responses(args.responses)
    run_many = None
    if args.workers is not None:
        from megatron_rrtf.sandbox import Job
        from megatron_rrtf.sandbox import run_many as sandbox_run_many

        def run_many(jobs):
            return sandbox_run_many([Job(**j) for j in jobs], workers=args.workers)
    ranked = rank_problems(problems, extra, run_many)
    dist = write_ranked(args.out, ranked)
    print(format_distribution(dist))
    print(f"ranked {len(ranked)} problems -> {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from align.train import run_rrtf_train
    from megatron_rrtf.config import load_config
    from mrrtf.commands.config_cmd import split_configs_and_overrides

    paths, overrides = split_configs_and_overrides(args.configs)
    summary = run_rrtf_train(load_config(paths, overrides), args.ranked)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 3 if summary["status"] == "interrupted" else 0


def _run_rounds(args: argparse.Namespace) -> int:
    from align.rounds import run_rounds
    from megatron_rrtf.config import load_config
    from mrrtf.commands.config_cmd import split_configs_and_overrides

    paths, overrides = split_configs_and_overrides(args.configs)
    summary = run_rounds(load_config(paths, overrides), args.problems, seed=args.seed)
    for r in summary["rounds"]:
        rate = r.get("student_pass_rate")
        print(f"round {r['round']}: {r['train']['status']} at step {r['train']['step']}"
              + (f", student samples passing {rate:.3f}" if rate is not None else "")
              + f" ({r['dir']})")
    print(f"final model: {summary['final']}; summary: {summary['summary']}")
    done = summary["rounds"] and summary["rounds"][-1]["train"]["status"] == "completed"
    return 0 if done else 3


def _eval(args: argparse.Namespace) -> int:
    from align.evaluate import HeldoutEval, evaluate_model, write_comparison
    from megatron_rrtf.config import load_config
    from megatron_rrtf.errors import ConfigError
    from megatron_rrtf.eval.checkpoint_eval import EvalOptions
    from megatron_rrtf.rrtf.problems import load_problems
    from mrrtf.commands.config_cmd import split_configs_and_overrides

    paths, overrides = split_configs_and_overrides(args.configs)
    cfg = load_config(paths, overrides).rrtf
    settings = HeldoutEval(samples=args.samples, temperature=args.temperature,
                           ks=csv_ints(args.ks, "--ks"),
                           max_new_tokens=cfg.student.max_new_tokens, seed=args.seed)
    tasks = tuple(t for t in csv_items(args.benchmarks) if t != "none")
    benchmarks = None
    if tasks:
        if not set(tasks) <= {"humaneval", "infill"}:
            raise ConfigError(f"--benchmarks {args.benchmarks!r}: choose from humaneval, infill "
                              "(comma-separated) or none")
        benchmarks = EvalOptions(tasks=tasks, num_samples=args.humaneval_samples,
                                 limit=args.humaneval_limit,
                                 infill_tasks=args.infill_tasks or None,
                                 seed=args.seed)
    problems, _ = load_problems(args.problems)
    models = {"before": args.before}
    for i, item in enumerate(args.after):
        name, _, path = item.rpartition("=")
        models[name or ("after" if len(args.after) == 1 else f"after_{i + 1}")] = path
    out = Path(args.out)
    columns = {name: evaluate_model(path, out.parent / f"{out.name}_{name.replace(' ', '_')}_hf",
                                    problems, cfg, settings, benchmarks)
               for name, path in models.items()}
    write_comparison(out, columns)
    print(Path(str(out) + ".md").read_text(), end="")
    print(f"-> {out}.md, {out}.json")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from align.demo import DEMO_BENCHMARKS, run_rrtf_demo, seeds_summary

    seeds = csv_ints(args.seeds, "--seeds")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = []
    for seed in seeds:
        results.append(run_rrtf_demo(args.pretrained, args.out, seed, args.train, args.heldout,
                                     overrides=args.overrides, sft_baseline=not args.no_sft,
                                     benchmarks=None if args.no_benchmarks else DEMO_BENCHMARKS,
                                     heldout_mode=args.heldout_mode))
        print(Path(args.out, f"seed_{seed}", "eval.md").read_text(), end="")
    table = seeds_summary(results)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "seeds.md").write_text(table)
    print("held-out pass@1 (greedy, %) per seed:\n" + table, end="")
    return 0
