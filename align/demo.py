"""The RRTF CPU demo: align the tiny pretrained model on the demo problem family.

Per seed, under <out>/seed_<s>/:
  data/{train,heldout,teacher}.jsonl   demo problems (held-out split per DemoData.heldout_mode)
                                       and a teacher file mixing correct and labelled-buggy
                                       answers
  rrtf/round_*/                        rounds of sample -> rank -> train with the RRTF loss
  sft/round_*/                         the same ranked sets, rrtf.rank_weight=0 (SFT only)
  eval.{md,json}                       held-out pass@1 before / after RRTF / after SFT-only
The SFT-only baseline trains on RRTF's own ranked files (SFT reads only the best teacher answer,
so which student samples sit beside it does not change its loss), for the same steps. Models are
exported for evaluation through the one export cache (RUN/eval/hf_step_X of each run). The seed
sets the demo data, train.seed (training order) and, through it, the sampling seeds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_rrtf.config import RunConfig, load_config
from megatron_rrtf.config.bundled import bundled_config
from megatron_rrtf.errors import CheckpointError
from megatron_rrtf.eval.checkpoint_eval import EvalOptions
from megatron_rrtf.rrtf.demo_problems import HeldoutMode

log = logging.getLogger(__name__)

DEMO_CONFIG = "rrtf/tiny_demo.yaml"
"""Under the project's configs/ (megatron_rrtf.config.bundled): found from any directory."""
DEMO_SEED = 1
"""The seed `mrrtf demo` and `mrrtf rrtf demo` run with unless told otherwise."""
COLUMNS = ("before", "after RRTF", "after SFT-only")
DEMO_BENCHMARKS = EvalOptions(tasks=("humaneval", "infill"), num_samples=5, ks=(1, 5),
                              max_new_tokens=64, infill_tasks=20, infill_formats=("span",),
                              progress=False)
"""HumanEval (all 164; greedy pass@1, pass@1/5 of 5 samples at T=0.8) and 20 infilling tasks per
mask type in the span format the demo model was pretrained on: sized for the CPU demo budget."""


@dataclass(frozen=True)
class DemoData:
    """The demo problem family's size and teacher (the CLI's flags take their defaults here)."""

    train: int = 400
    """Training problems."""
    heldout: int = 100
    """Held-out problems."""
    teacher_per_problem: int = 2
    """Teacher answers per training problem."""
    correct_fraction: float = 0.7
    """Share of the teacher's answers that are correct (the rest carry a labelled bug)."""
    heldout_mode: HeldoutMode = "params"
    """params: training templates with unseen parameters; templates: whole templates never seen
    in training (harder). See demo_problems.generate_demo_problems."""


def write_demo_data(out: Path, seed: int, data: DemoData = DemoData()) -> dict[str, Path]:
    """train/heldout/teacher JSONL files under `out`; returns their paths."""
    from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records

    out.mkdir(parents=True, exist_ok=True)
    train, held = generate_demo_problems(data.train, data.heldout, seed, data.heldout_mode)
    recs = teacher_records(train, data.teacher_per_problem, data.correct_fraction, seed)
    lines = {"train": [d.to_json() for d in train], "heldout": [d.to_json() for d in held],
             "teacher": recs}
    paths = {name: out / f"{name}.jsonl" for name in lines}
    for name, records in lines.items():
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


def demo_config(pretrained: Path, run_dir: Path, data: dict[str, Path], seed: int,
                config_paths: Sequence[str | Path] | None = None,
                overrides: Sequence[str] = ()) -> RunConfig:
    """The RRTF config for the demo: the pretrained run's model and tokenizer, our data."""
    step_cfg = pretrained / "config.yaml"
    if not step_cfg.is_file():
        raise CheckpointError(f"{pretrained} has no config.yaml: run the pretraining stage of "
                              "`mrrtf demo` first (or give its run directory)")
    base = load_config(step_cfg)
    config = load_config(list(config_paths or [bundled_config(DEMO_CONFIG)]), [
        f"data.tokenizer={base.data.tokenizer}", f"logging.run_dir={run_dir}",
        f"checkpoint.init_from={pretrained}", f"rrtf.problems={data['train']}",
        f"train.seed={seed}", "logging.wandb_mode=disabled", *overrides])
    config.model = base.model
    for t in config.rrtf.teachers:
        if t.kind == "jsonl":
            t.path = str(data["teacher"])
    return config.validate()


def run_rrtf_demo(pretrained: str | Path, out: str | Path, seed: int,
                  data: DemoData = DemoData(), config_paths: Sequence[str | Path] | None = None,
                  overrides: Sequence[str] = (), sft_baseline: bool = True,
                  benchmarks: EvalOptions | None = DEMO_BENCHMARKS) -> dict[str, Any]:
    """One seed of the demo; returns {"metrics": {column: {...}}, "table", "seconds"}.
    `benchmarks`: the HumanEval / infilling rows of every column (None: held-out rows only)."""
    from align.evaluate import HeldoutEval, evaluate_model, write_comparison
    from align.rounds import run_rounds
    from megatron_rrtf.rrtf.problems import load_problems

    t0 = time.time()
    pretrained, out = Path(pretrained), Path(out) / f"seed_{seed}"
    files = write_demo_data(out / "data", seed, data)
    rrtf_cfg = demo_config(pretrained, out / "rrtf", files, seed, config_paths, overrides)
    heldout, _ = load_problems(files["heldout"])
    settings = HeldoutEval(seed=seed)

    def evaluate(model: Path) -> dict[str, float]:
        return evaluate_model(model, heldout, rrtf_cfg.rrtf, settings, benchmarks)

    columns: dict[str, dict[str, float]] = {}
    columns["before"] = evaluate(pretrained)
    print(f"      seed {seed}: held-out pass@1 before: "
          f"{columns['before']['heldout/pass@1 (greedy)']:.3f}", flush=True)
    rrtf = run_rounds(rrtf_cfg)
    columns["after RRTF"] = evaluate(Path(rrtf["final"]))
    print(f"      seed {seed}: after RRTF: "
          f"{columns['after RRTF']['heldout/pass@1 (greedy)']:.3f}", flush=True)
    if sft_baseline:
        sft_cfg = demo_config(pretrained, out / "sft", files, seed, config_paths,
                              [*overrides, "rrtf.rank_weight=0"])
        for r in range(1, sft_cfg.rrtf.rounds + 1):  # the same ranked sets as RRTF's rounds
            src, dst = out / "rrtf" / f"round_{r}" / "ranked.jsonl", \
                out / "sft" / f"round_{r}" / "ranked.jsonl"
            if src.is_file() and not dst.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        sft = run_rounds(sft_cfg)
        columns["after SFT-only"] = evaluate(Path(sft["final"]))
        print(f"      seed {seed}: after SFT-only: "
              f"{columns['after SFT-only']['heldout/pass@1 (greedy)']:.3f}", flush=True)
    table = write_comparison(out / "eval", columns)
    seconds = time.time() - t0
    result = {"seed": seed, "metrics": columns, "table": table, "seconds": seconds,
              "rounds": rrtf["rounds"]}
    (out / "demo_result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def seeds_summary(results: Sequence[dict[str, Any]],
                  metric: str = "heldout/pass@1 (greedy)") -> str:
    """A Markdown table of one metric per seed and column, with the mean."""
    cols = [c for c in COLUMNS if c in results[0]["metrics"]]
    lines = ["| seed | " + " | ".join(cols) + " | wall (s) |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for r in results:
        lines.append(f"| {r['seed']} | " + " | ".join(
            f"{100 * r['metrics'][c][metric]:.1f}" for c in cols) + f" | {r['seconds']:.0f} |")
    means = [sum(r["metrics"][c][metric] for r in results) / len(results) for c in cols]
    lines.append("| mean | " + " | ".join(f"{100 * m:.1f}" for m in means) + " | |")
    return "\n".join(lines) + "\n"
