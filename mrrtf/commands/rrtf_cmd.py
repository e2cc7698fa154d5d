"""`mrrtf rrtf`: the RRTF steps. Every step that samples, extracts or trains reads the config
tree (`rrtf.*`, and train.seed for every seed), so one YAML drives them all; defaults of the
remaining flags come from their dataclasses (mrrtf.commands.flags).

  mrrtf rrtf demo-data --out-dir D          demo problems (train/held-out) + a teacher JSONL
  mrrtf rrtf decontaminate CONFIG... --problems P --out O   drop HumanEval overlaps
                    (rrtf.decontam_ngram, rrtf.decontam_threshold)
  mrrtf rrtf evolve CONFIG... --seeds S --teacher-outputs T --out O   Evol-Instruct + filter +
                    dedup (rrtf.evol_rounds, rrtf.near_dup_jaccard; --write-requests R writes
                    the rewrite prompts for an offline teacher)
  mrrtf rrtf sample CONFIG... --problems P --student DIR --out O   student + teacher samples
                    (rrtf.sample.backend hf|vllm; --shard i/n or RANK/WORLD_SIZE: one share of
                    the chunks per process or node, resumable; the last shard merges)
  mrrtf rrtf rank CONFIG... --problems P --responses R... --out O    sandbox verdicts -> ranked
                    (rrtf.executor local|ray)
  mrrtf rrtf train CONFIG... --ranked R     ranking loss + SFT on megatron-core
  mrrtf rrtf run CONFIG...                  rounds of export -> sample -> rank -> train (resumable)
  mrrtf rrtf eval CONFIG... --problems P --before M --after M   held-out pass@k table
  mrrtf rrtf demo --pretrained DIR --seeds 1,2,3   the CPU demo (RRTF vs SFT-only), per seed
  mrrtf rrtf study --pretrained DIR --seeds 1,2,3  does ranking add to SFT? RRTF / RRHF /
                    their SFT-only controls from a warm student whose samples pass sometimes
                    (align/study.py)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from mrrtf.commands.arglists import csv_ints, csv_items
from mrrtf.commands.config_cmd import add_config_arguments, load_config_arguments
from mrrtf.commands.flags import add_flags, flag_values

HELP = ("RRTF steps: demo-data, decontaminate, evolve, sample, rank, train, run, eval, demo, "
        "study")
log = logging.getLogger(__name__)

DEMO_DATA_FIELDS = {
    "train": "training problems",
    "heldout": "held-out problems",
    "teacher_per_problem": "teacher answers per training problem",
    "correct_fraction": "share of correct teacher answers (the rest carry a labelled bug)",
    "heldout_mode": "params: training templates with unseen parameters; templates: whole "
                    "templates never seen in training (harder)",
}
HELDOUT_FIELDS = {
    "samples": "n sampled answers per held-out problem for pass@k (0: greedy only)",
    "temperature": "temperature of the sampled held-out answers",
    "ks": "comma-separated k (k <= samples kept)",
}
BENCHMARK_FIELDS = {
    "num_samples": "sampled HumanEval completions per problem for pass@k (0: greedy only)",
    "limit": "first N HumanEval problems only (none: all 164)",
    "infill_tasks": "infilling tasks per mask type (0: all, as `mrrtf eval`)",
}
BENCHMARK_FLAGS = {"num_samples": "--humaneval-samples", "limit": "--humaneval-limit"}
STUDY_FIELDS = {
    "round1_steps": "RRTF steps from the pretrained model (the warm student)",
    "round2_steps": "training steps of each arm (the same for all)",
    "round2_samples": "student samples per training problem in round 2",
    "round2_temperature": "sampling temperature of the round-2 student",
    "arms": "comma-separated arms: rrtf, rrhf, sft (RRTF's CE alone), sft_rrhf (RRHF's CE alone)",
}
STUDY_SEEDS = "1,2,3"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from align.demo import DEMO_SEED, DemoData
    from align.evaluate import HeldoutEval
    from align.study import StudySettings
    from megatron_rrtf.config.rrtf import SamplingConfig
    from megatron_rrtf.eval.checkpoint_eval import EvalOptions
    from mrrtf.commands.demo import DEMO_OUT, PRETRAIN_DIR, RRTF_DIR

    sub = p.add_subparsers(dest="rrtf_command", metavar="STEP", required=True)

    d = sub.add_parser("demo-data", help="write demo problems and a mixed teacher JSONL")
    d.add_argument("--out-dir", required=True)
    add_flags(d, DemoData, DEMO_DATA_FIELDS)
    d.add_argument("--seed", type=int, default=DEMO_SEED, help=f"default: {DEMO_SEED}")
    d.set_defaults(_step=_demo_data)

    c = sub.add_parser("decontaminate", help="drop problems overlapping HumanEval "
                                             "(rrtf.decontam_ngram, rrtf.decontam_threshold)")
    add_config_arguments(c)
    c.add_argument("--problems", required=True)
    c.add_argument("--out", required=True)
    c.set_defaults(_step=_decontaminate)

    e = sub.add_parser("evolve", help="Evol-Instruct rewrite through a teacher, filter, dedup "
                                      "(rrtf.evol_rounds, rrtf.near_dup_jaccard, train.seed)")
    add_config_arguments(e)
    e.add_argument("--seeds", required=True, help="seed problems JSONL")
    e.add_argument("--out", help="evolved problems JSONL (seeds included)")
    e.add_argument("--teacher-outputs", help='JSONL of {"id": request id, "output": text}')
    e.add_argument("--write-requests", help="write round 1's rewrite requests here and stop")
    e.add_argument("--teacher-model", help="HF model directory to answer the requests locally")
    add_flags(e, SamplingConfig, {"max_new_tokens": "new tokens per --teacher-model answer"})
    e.set_defaults(_step=_evolve)

    s = sub.add_parser("sample", help="sample K responses per problem from student + teachers")
    add_config_arguments(s)
    s.add_argument("--problems", required=True)
    s.add_argument("--student", help="HF model directory of the student (omit: teachers only)")
    s.add_argument("--out", required=True)
    s.add_argument("--shard", default=None,
                   help="i/n: sample shard i of n (chunk c goes to shard c %% n); default: "
                        "RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS, else 0/1")
    s.add_argument("--round", type=int, default=None,
                   help="seed as round R of `mrrtf rrtf run` does, so that with --out "
                        "RUN_DIR/round_R/responses.jsonl the run finds these chunks its own "
                        "(default: seed train.seed)")
    s.set_defaults(_step=_sample)

    r = sub.add_parser("rank", help="run responses' code in the sandbox and rank per problem "
                                    "(code extracted at rrtf.stop_markers)")
    add_config_arguments(r)
    r.add_argument("--problems", required=True)
    r.add_argument("--responses", nargs="*", default=[],
                   help='JSONL files, one {"problem_id", "text", "source"} per line')
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=None,
                   help="sandboxes (executor local) or Ray tasks (executor ray) at once "
                        "(default: rrtf.verdict_workers, else the CPU count)")
    r.set_defaults(_step=_rank)

    t = sub.add_parser("train", help="train on a ranked set with the ranking loss + SFT "
                                     "(megatron-core; torchrun for TP/PP/DP)")
    add_config_arguments(t, "checkpoint.init_from= the model to align")
    t.add_argument("--ranked", required=True, help="ranked JSONL written by `mrrtf rrtf rank`")
    t.set_defaults(_step=_train)

    u = sub.add_parser("run", help="rrtf.rounds rounds of export -> sample -> rank -> train "
                                   "(re-run to resume)")
    add_config_arguments(u, "checkpoint.init_from= the model to align")
    u.add_argument("--problems", help="training problems JSONL (default: rrtf.problems)")
    u.set_defaults(_step=_run_rounds)

    v = sub.add_parser("eval", help="held-out pass@1 (greedy) and pass@k before/after, one "
                                    "table (Markdown + JSON)")
    add_config_arguments(v, "prompt template, stop markers, student.max_new_tokens, train.seed")
    v.add_argument("--problems", required=True, help="held-out problems JSONL")
    v.add_argument("--before", required=True, help="HF dir, CTranslate2 dir, run dir or step dir")
    v.add_argument("--after", required=True, nargs="+",
                   help="HF/CTranslate2/run/step dirs (NAME=PATH to name a column)")
    v.add_argument("--out", required=True, help="output prefix: writes OUT.md and OUT.json")
    add_flags(v, HeldoutEval, HELDOUT_FIELDS)
    v.add_argument("--benchmarks", default="none",
                   help="also score every model on public benchmarks, comma-separated: "
                        "humaneval, infill (as `mrrtf eval`), or none")
    add_flags(v, EvalOptions, BENCHMARK_FIELDS, BENCHMARK_FLAGS)
    v.set_defaults(_step=_eval)

    m = sub.add_parser("demo", help="CPU demo on the tiny pretrained model: held-out pass@1 "
                                    "before / after RRTF / after SFT-only, per seed")
    m.add_argument("--pretrained", default=f"{DEMO_OUT}/{PRETRAIN_DIR}",
                   help="pretraining run dir (what `mrrtf demo` trains)")
    m.add_argument("--out", default=f"{DEMO_OUT}/{RRTF_DIR}")
    m.add_argument("--seeds", default=str(DEMO_SEED),
                   help="comma-separated seeds (data, sampling, training order)")
    add_flags(m, DemoData, {k: DEMO_DATA_FIELDS[k] for k in ("train", "heldout",
                                                              "heldout_mode")})
    m.add_argument("--no-sft", action="store_true", help="skip the SFT-only baseline")
    m.add_argument("--no-benchmarks", action="store_true",
                   help="held-out rows only (skip HumanEval and infilling: faster seed sweeps)")
    m.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (1 is much faster on a shared, busy CPU)")
    m.add_argument("overrides", nargs="*", help="key=value overrides of "
                                                "configs/rrtf/tiny_demo.yaml")
    m.set_defaults(_step=_demo)

    y = sub.add_parser("study", help="does ranking add to SFT? RRTF vs RRHF vs SFT-only from "
                                     "round 1's model on one ranked set, over seeds (resumable)")
    y.add_argument("--pretrained", default=f"{DEMO_OUT}/{PRETRAIN_DIR}",
                   help="pretraining run dir (what `mrrtf demo --no-rrtf` trains)")
    y.add_argument("--out", default=f"{DEMO_OUT}/study",
                   help="per seed OUT/seed_S/, and OUT/report.md over the seeds")
    y.add_argument("--seeds", default=STUDY_SEEDS,
                   help=f"comma-separated seeds (default: {STUDY_SEEDS})")
    add_flags(y, StudySettings, STUDY_FIELDS)
    add_flags(y, DemoData, {k: DEMO_DATA_FIELDS[k] for k in ("train", "heldout")})
    y.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (1 is much faster on a shared, busy CPU)")
    y.add_argument("overrides", nargs="*", help="key=value overrides of "
                                                "configs/rrtf/tiny_demo.yaml (every stage)")
    y.set_defaults(_step=_study)


def run(args: argparse.Namespace) -> int:
    return int(args._step(args) or 0)


def _demo_data(args: argparse.Namespace) -> int:
    from align.demo import DemoData, write_demo_data

    data = DemoData(**flag_values(args, DemoData, DEMO_DATA_FIELDS))
    paths = write_demo_data(Path(args.out_dir), args.seed, data)
    counts = {name: len(p.read_text().splitlines()) for name, p in paths.items()}
    print(f"wrote {counts['train']} train, {counts['heldout']} held-out problems and "
          f"{counts['teacher']} teacher responses to {args.out_dir}")
    return 0


def _decontaminate(args: argparse.Namespace) -> int:
    from megatron_rrtf.rrtf.decontaminate import NgramIndex, decontaminate
    from megatron_rrtf.rrtf.problems import load_problems, write_problems

    cfg = load_config_arguments(args).rrtf
    problems, _ = load_problems(args.problems)
    kept, dropped = decontaminate(problems, NgramIndex.humaneval(cfg.decontam_ngram),
                                  cfg.decontam_threshold)
    write_problems(args.out, kept)
    for d in dropped:
        print(f"dropped {d.problem_id}: {d.field} overlap {d.overlap:.2f} (e.g. '{d.example}')")
    print(f"kept {len(kept)} of {len(problems)} problems -> {args.out} (word {cfg.decontam_ngram}"
          f"-grams, threshold {cfg.decontam_threshold})")
    return 0


def _evolve(args: argparse.Namespace) -> int:
    import numpy as np

    from megatron_rrtf.errors import ConfigError, DataError
    from megatron_rrtf.rrtf.evolve import (
        evolution_requests,
        evolve,
        load_teacher_outputs,
        requests_to_jsonl,
    )
    from megatron_rrtf.rrtf.problems import load_problems, write_problems

    config = load_config_arguments(args)
    cfg, seed = config.rrtf, config.train.seed
    seeds, _ = load_problems(args.seeds)
    if args.write_requests:
        reqs = evolution_requests(seeds, np.random.default_rng(seed))
        requests_to_jsonl(args.write_requests, reqs)
        print(f"wrote {len(reqs)} round-1 requests to {args.write_requests}")
        return 0
    if not (args.teacher_outputs or args.teacher_model) or not args.out:
        raise DataError("mrrtf rrtf evolve needs --out and --teacher-outputs or --teacher-model "
                        "(or --write-requests to produce the prompts first)")
    if cfg.evol_rounds < 1:
        raise ConfigError(f"rrtf.evol_rounds={cfg.evol_rounds}: nothing to evolve; set "
                          "rrtf.evol_rounds=N (rounds of rewriting) on the command line or in "
                          "the config")
    if args.teacher_model:
        from megatron_rrtf.generation.backends import load_completer
        from megatron_rrtf.generation.completer import Sampling

        sampler = load_completer(args.teacher_model, cfg.sample).sampler(Sampling(
            max_new_tokens=args.max_new_tokens, batch_size=cfg.generation_batch_size))

        def teacher(prompts):
            return [outs[0] for outs in sampler(prompts, 0.0, 1, seed)]
    else:
        teacher = load_teacher_outputs(args.teacher_outputs)
    problems, report = evolve(seeds, teacher, cfg.evol_rounds, seed, cfg.near_dup_jaccard)
    write_problems(args.out, problems)
    print(report.summary())
    return 0


def _sample(args: argparse.Namespace) -> int:
    from align.rounds import round_seed
    from align.sample import Shard, model_sampler, sample_to_file
    from megatron_rrtf.generation.backends import check_engine
    from megatron_rrtf.rrtf.problems import load_problems

    config = load_config_arguments(args)
    cfg = config.rrtf
    shard = Shard.parse(args.shard) if args.shard else Shard.from_env()
    if args.student or any(t.kind == "hf_model" for t in cfg.teachers):
        check_engine(cfg.sample)
    problems, _ = load_problems(args.problems)
    student = model_sampler(args.student, cfg.student, cfg) if args.student else None
    seed = config.train.seed if args.round is None else round_seed(config.train.seed, args.round)
    n = sample_to_file(args.out, problems, cfg, student, seed=seed,
                       chunk_size=cfg.sample_chunk, shard=shard, student_model=args.student)
    if n is None:
        print(f"shard {shard}: its chunks are in {args.out}.chunks; the last shard to finish "
              f"writes {args.out}")
    else:
        print(f"wrote {n} responses for {len(problems)} problems -> {args.out}")
    return 0


def _rank(args: argparse.Namespace) -> int:
    from align.rank import rank_problems, read_responses, verdict_runner, write_ranked
    from megatron_rrtf.rrtf.problems import load_problems
    from megatron_rrtf.rrtf.ranking import format_distribution

    cfg = load_config_arguments(args).rrtf
    problems, _ = load_problems(args.problems)
    ranked = rank_problems(problems, cfg.stop_markers, read_responses(args.responses),
                           verdict_runner(cfg, args.workers))
    dist = write_ranked(args.out, ranked)
    print(format_distribution(dist))
    print(f"ranked {len(ranked)} problems -> {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from align.train import run_rrtf_train

    summary = run_rrtf_train(load_config_arguments(args), args.ranked)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 3 if summary["status"] == "interrupted" else 0


def _run_rounds(args: argparse.Namespace) -> int:
    from align.rounds import run_rounds

    summary = run_rounds(load_config_arguments(args), args.problems)
    for r in summary["rounds"]:
        rate = r.get("student_pass_rate")
        print(f"round {r['round']}: {r['train']['status']} at step {r['train']['step']}"
              + (f", student samples passing {rate:.3f}" if rate is not None else "")
              + f" ({r['dir']})")
    print(f"final model: {summary['final']}; summary: {summary['summary']}")
    done = summary["rounds"] and summary["rounds"][-1]["train"]["status"] == "completed"
    return 0 if done else 3


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from align.evaluate import HeldoutEval, evaluate_model, write_comparison
    from megatron_rrtf.errors import ConfigError
    from megatron_rrtf.eval.checkpoint_eval import EvalOptions
    from megatron_rrtf.rrtf.problems import load_problems

    config = load_config_arguments(args)
    cfg, seed = config.rrtf, config.train.seed
    settings = HeldoutEval(seed=seed, **flag_values(args, HeldoutEval, HELDOUT_FIELDS))
    tasks = tuple(t for t in csv_items(args.benchmarks) if t != "none")
    benchmarks = None
    if tasks:
        if not set(tasks) <= {"humaneval", "infill"}:
            raise ConfigError(f"--benchmarks {args.benchmarks!r}: choose from humaneval, infill "
                              "(comma-separated) or none")
        values = flag_values(args, EvalOptions, BENCHMARK_FIELDS, BENCHMARK_FLAGS)
        values["infill_tasks"] = values["infill_tasks"] or None
        benchmarks = dataclasses.replace(EvalOptions(tasks=tasks, seed=seed), **values)
    problems, _ = load_problems(args.problems)
    models = {"before": args.before}
    for i, item in enumerate(args.after):
        name, _, path = item.rpartition("=")
        models[name or ("after" if len(args.after) == 1 else f"after_{i + 1}")] = path
    columns = {name: evaluate_model(path, problems, cfg, settings, benchmarks)
               for name, path in models.items()}
    out = Path(args.out)
    write_comparison(out, columns)
    print(Path(str(out) + ".md").read_text(), end="")
    print(f"-> {out}.md, {out}.json")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from align.demo import DEMO_BENCHMARKS, DemoData, run_rrtf_demo, seeds_summary

    seeds = csv_ints(args.seeds, "--seeds")
    data = DemoData(**{k: getattr(args, k) for k in ("train", "heldout", "heldout_mode")})
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = []
    for seed in seeds:
        results.append(run_rrtf_demo(args.pretrained, args.out, seed, data,
                                     overrides=args.overrides, sft_baseline=not args.no_sft,
                                     benchmarks=None if args.no_benchmarks else DEMO_BENCHMARKS))
        print(Path(args.out, f"seed_{seed}", "eval.md").read_text(), end="")
    table = seeds_summary(results)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "seeds.md").write_text(table)
    print("held-out pass@1 (greedy, %) per seed:\n" + table, end="")
    return 0


def _study(args: argparse.Namespace) -> int:
    from align.demo import DemoData
    from align.study import StudySettings, run_study

    seeds = csv_ints(args.seeds, "--seeds")
    settings = StudySettings(**flag_values(args, StudySettings, STUDY_FIELDS))
    data = DemoData(train=args.train, heldout=args.heldout)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    _, report = run_study(args.pretrained, args.out, seeds, settings, data, args.overrides)
    print(report.read_text(), end="")
    print(f"-> {report} (per seed: {Path(args.out) / 'seed_S' / 'study.json'})")
    return 0
