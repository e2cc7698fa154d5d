"""`mrrtf compare-demo --grid objectives|data|epochs|all`: the comparison grid over seeds.

Preprocess the data once (when its output has no manifest yet), then train and evaluate every
(axis, setting, seed) run of `eval.grid` (resumable: finished runs and evaluations are skipped),
`--jobs` at a time with cores / jobs torch threads each, and write OUT/grid_report/report.md
(`eval.grid_report`). The evaluation is the one that moves at small scale: held-out perplexity
per domain and infill loss / exact match on held-out code; `--humaneval` adds HumanEval pass@k
and infilling pass@1 (for larger models). `--quick`: a quarter of the steps, 2 seeds and fewer
infill holes, said in the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BASE_SEED = 1234
"""Seed k of a setting runs with train.seed = data.seed = BASE_SEED + k (k = 0: the configs')."""

PRESETS: dict[str, tuple[str, ...]] = {  # model size presets: overrides over configs/tiny.yaml
    "tiny": (),  # 2 layers, width 128, seq 256: 2.4M parameters (1M of them the embedding)
    "small": ("model.num_layers=4", "model.hidden_size=256", "model.num_attention_heads=8"),
    "micro": ("model.num_layers=1", "model.hidden_size=32", "model.num_attention_heads=2",
              "model.seq_length=32", "train.micro_batch_size=2", "train.global_batch_size=2",
              "train.warmup_steps=1"),  # for smoke tests only
}
QUICK_SEEDS = 2


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("grid (with --grid)")
    g.add_argument("--grid", choices=["objectives", "data", "epochs", "all"], default=None,
                   help="run the comparison grid over seeds (without it: the four single-seed "
                        "runs of the original demo)")
    g.add_argument("--seeds", type=int, default=3, help="seeds per setting (model init and data "
                                                        "order)")
    g.add_argument("--quick", action="store_true",
                   help=f"a quarter of --steps, {QUICK_SEEDS} seeds, fewer infill holes (said "
                        "in the report)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="model size: overrides over configs/tiny.yaml")
    g.add_argument("--jobs", type=int, default=None,
                   help="runs in parallel (default: the CPU count); each gets cores / jobs "
                        "torch threads")
    g.add_argument("--data", default=None,
                   help="data config (default: the built-in corpus, configs/data/builtin.yaml)")
    g.add_argument("--humaneval", action="store_true",
                   help="also HumanEval pass@k and infilling pass@1 (useful for larger models)")
    g.add_argument("--infill-loss-tasks", type=int, default=64,
                   help="held-out code holes per mask type for infill loss / exact match")
    g.add_argument("--exact-match", action=argparse.BooleanOptionalAction, default=True,
                   help="generate the greedy middles for infill exact match (--no-exact-match: "
                        "the infill loss only, no HF export or generation)")


@dataclass(frozen=True)
class GridTrainer:
    """Trains one grid run (picklable: it goes to worker processes)."""

    config_paths: tuple[str, ...]
    """Model and data config; the setting's objective config goes after them."""
    common: tuple[str, ...]
    """Overrides for every run (tokenizer, preset, the user's)."""

    def config(self, spec, run_dir: Path):
        from megatron_rrtf.config import load_config
        from megatron_rrtf.config.bundled import bundled_config

        steps, seed = spec.setting.steps, BASE_SEED + spec.seed
        return load_config([*self.config_paths, bundled_config(spec.setting.objective)], [
            f"train.train_steps={steps}", f"train.eval_interval={max(steps // 8, 1)}",
            f"checkpoint.save_interval={steps}", f"logging.run_dir={run_dir}",
            f"logging.run_name=grid-{spec.key.replace('/', '-')}",
            "logging.wandb_mode=disabled", "logging.progress_bar=false",
            f"train.seed={seed}", f"data.seed={seed}", *self.common,
            *spec.setting.overrides])

    def __call__(self, spec, run_dir: Path) -> dict[str, Any]:
        from megatron_rrtf.data.stream import build_train_stream
        from megatron_rrtf.tokenizer.loader import load_tokenizer
        from pretrain.run import run_pretrain

        t0 = time.time()
        config = self.config(spec, run_dir)
        summary = run_pretrain(config)
        seconds = time.time() - t0
        stream = build_train_stream(config, load_tokenizer(config.data.tokenizer), 0, 1,
                                    config.train.train_steps * config.train.global_batch_size)
        return {"status": summary.get("status"), "step": summary.get("step"),
                "consumed_tokens": summary.get("consumed_tokens"), "train_time_s": seconds,
                "effective_epochs": stream.effective_epochs}


@dataclass(frozen=True)
class GridEvaluator:
    options: Any
    """EvalOptions."""

    def __call__(self, spec, run_dir: Path) -> dict[str, Any]:
        from mrrtf.commands.compare_demo import evaluate_run

        return evaluate_run(run_dir, self.options)


def grid_eval_options(args: argparse.Namespace, threads: int):
    from mrrtf.commands.compare_demo import EVAL_FIELDS, demo_eval_options
    from mrrtf.commands.flags import flag_values

    tasks = ("perplexity", "infill_loss") + (("humaneval", "infill") if args.humaneval else ())
    holes = max(8, args.infill_loss_tasks // 4) if args.quick else args.infill_loss_tasks
    options = dataclasses.replace(demo_eval_options(),
                                  **flag_values(args, demo_eval_options(), EVAL_FIELDS))
    return dataclasses.replace(options, tasks=tasks, infill_loss_tasks=holes, threads=threads,
                               infill_exact_match=args.exact_match, progress=False)


def _eval_key(options) -> str | None:
    """What makes an evaluation different (not how fast it ran: threads, workers, ...)."""
    if options is None:
        return None
    how = {"threads", "progress", "workers", "device", "batch_size"}
    return repr(sorted((k, v) for k, v in dataclasses.asdict(options).items() if k not in how))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} CPUs visible, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}")


def _data_facts(data_config, tokens_per_step: int):
    from megatron_rrtf.config.loader import to_dict
    from megatron_rrtf.data.manifest import read_manifest
    from megatron_rrtf.eval.grid import DataFacts

    manifest = read_manifest(data_config.data.output_dir)
    sources = [to_dict(s) for s in data_config.data.sources]
    code_tokens = sum(int(manifest["sources"][s["name"]]["splits"]["train"]["tokens"])
                      for s in sources if s["domain"] == "code" and s["name"] in
                      manifest["sources"])
    return DataFacts(sources, code_tokens, tokens_per_step)


def run_grid_command(args: argparse.Namespace) -> int:
    from megatron_rrtf.config import load_config
    from megatron_rrtf.config.bundled import bundled_config
    from megatron_rrtf.data.preprocess import preprocess
    from megatron_rrtf.errors import ConfigError
    from megatron_rrtf.eval.grid import AXES, GridJob, default_jobs, grid_specs, run_grid
    from megatron_rrtf.eval.grid_report import write_grid_report
    from mrrtf.commands.demo import DATA_CONFIG, MODEL_CONFIG

    t_start = time.time()
    cores = os.cpu_count() or 1
    jobs = args.jobs or default_jobs(1, cores)
    if jobs < 1 or args.seeds < 1 or args.steps < 1:
        raise ConfigError("need --jobs >= 1, --seeds >= 1 and --steps >= 1")
    threads = max(1, cores // jobs)  # jobs x threads <= cores
    steps = max(1, args.steps // 4) if args.quick else args.steps
    seeds = min(args.seeds, QUICK_SEEDS) if args.quick else args.seeds
    data_path = Path(args.data) if args.data else bundled_config(DATA_CONFIG)
    model_path = bundled_config(MODEL_CONFIG)
    data_config = load_config([data_path])
    if not (Path(data_config.data.output_dir) / "manifest.json").is_file():
        preprocess(data_config)
    tokenizer = data_config.data.tokenizer or str(Path(data_config.data.output_dir)
                                                  / "tokenizer.model")
    common = (f"data.tokenizer={tokenizer}", *PRESETS[args.preset], *args.overrides)
    trainer = GridTrainer((str(model_path), str(data_path)), common)
    probe = load_config([model_path, data_path], list(common))
    facts = _data_facts(data_config, probe.train.global_batch_size * probe.model.seq_length)
    axes = list(AXES) if args.grid == "all" else [args.grid]
    specs = grid_specs(axes, steps, seeds, facts)
    options = None if args.stage == "train" else grid_eval_options(args, threads)
    evaluator = GridEvaluator(options) if options is not None else None
    out = Path(args.out)
    grid_jobs = [GridJob(spec, out / "runs" / spec.key, trainer, evaluator,
                         train_key=repr(trainer.config(spec, out / "runs" / spec.key)),
                         eval_key=_eval_key(options))
                 for spec in specs]
    print(f"grid {args.grid}: {len(specs)} runs ({len(specs) // seeds} settings x {seeds} "
          f"seeds, {steps} steps, preset {args.preset}), {jobs} at a time x {threads} torch "
          f"threads", flush=True)
    records = run_grid(grid_jobs, jobs=min(jobs, len(grid_jobs)), threads=threads)
    command = (f"mrrtf compare-demo --grid {args.grid} --steps {args.steps} --seeds "
               f"{args.seeds} --preset {args.preset}" + (" --quick" if args.quick else "")
               + (f" --data {args.data}" if args.data else "")
               + "".join(f" {o}" for o in args.overrides))
    meta = {"command": command, "steps": steps, "seeds": seeds, "quick": args.quick,
            "preset": f"{args.preset} ({', '.join(PRESETS[args.preset]) or 'configs/tiny.yaml'})",
            "machine": f"{machine()}; {jobs} parallel runs x {threads} torch threads",
            "wall_time_s": time.time() - t_start,
            "run_time_s": sum((r.get("train") or {}).get("train_time_s") or 0.0
                              for r in records)
            + sum((r.get("eval") or {}).get("wall_time_s") or 0.0 for r in records)}
    report = write_grid_report(records, out / "grid_report", meta)
    print(f"report: {report}")
    print(f"grid finished in {time.time() - t_start:.0f} s")
    return 0
