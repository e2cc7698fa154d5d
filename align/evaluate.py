"""Before/after evaluation of an aligned model: held-out problem pass@k and one comparison table.

Held-out problems (the demo family's held-out split, or any problems JSONL) are prompted with
the RRTF template, answered through the one generation path (`align.sample.model_sampler`: the
student's max_new_tokens / top_p, rrtf.stop_markers), reduced to code by the same
`extract_code` rule as ranking and training, and run against their tests in the sandbox
(`megatron_rrtf.sandbox.run_many`). Metrics:
  heldout/pass@1 (greedy)        one greedy answer per problem
  heldout/pass@k (T=t, n=n)      n sampled answers per problem, unbiased pass@k (eval.passk)

`evaluate_model` adds, when asked, the public benchmarks of `mrrtf eval`
(`megatron_rrtf.eval.checkpoint_eval`) to the same column, so alignment gains and what it costs
elsewhere sit in one table:
  humaneval/greedy/pass@1, humaneval/sampled/pass@k   HumanEval (bundled), prompt as published
  infill/<format>/<mask type>/pass@1                  HumanEval infilling, unchanged-or-better
                                                      is the bar (PanGu-Coder2 reports no
                                                      infilling; our base is an infilling model)

`comparison` puts several models' metric dicts side by side against a baseline column: per
metric and per compared model {"before", "after", "delta"}; `comparison_markdown` renders it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from align.rank import RunMany
from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.eval.checkpoint_eval import EvalOptions
from megatron_rrtf.eval.passk import mean_pass_at_k
from megatron_rrtf.rrtf.extract import extract_code
from megatron_rrtf.rrtf.problems import Problem, prompts_for
from megatron_rrtf.sandbox import run_many

if TYPE_CHECKING:
    from megatron_rrtf.generation.completer import Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldoutEval:
    """How held-out problems are answered (besides the student's max_new_tokens and top_p and
    rrtf.generation_batch_size, which the sampler brings)."""

    seed: int
    """Sampling seed (the CLI passes train.seed)."""
    samples: int = 0
    """n sampled answers per problem for pass@k (0: greedy pass@1 only)."""
    temperature: float = 0.8
    ks: tuple[int, ...] = (1, 5)
    """pass@k reported for each k <= samples."""

    def __post_init__(self) -> None:
        if self.samples < 0 or any(k < 1 for k in self.ks):
            raise ConfigError(f"held-out eval: samples={self.samples} must be >= 0 and every k "
                              f"in {self.ks} >= 1")


def passed_counts(problems: Sequence[Problem], completions: Sequence[Sequence[str]],
                  cfg: RRTFConfig, run_many: RunMany) -> list[tuple[int, int]]:
    """(samples, passed) per problem: each completion's extracted code against the tests."""
    jobs = [p.job(extract_code(text, cfg.stop_markers), i)
            for p, texts in zip(problems, completions) for i, text in enumerate(texts)]
    results = run_many(jobs) if jobs else []
    passed = iter(r.outcome == "passed" for r in results)
    return [(len(texts), sum(next(passed) for _ in texts)) for texts in completions]


def heldout_metrics(problems: Sequence[Problem], sampler: Sampler, cfg: RRTFConfig,
                    settings: HeldoutEval, run_many: RunMany = run_many,
                    prefix: str = "heldout") -> dict[str, float]:
    """Greedy pass@1 and, when settings.samples > 0, sampled pass@k over `problems`."""
    prompts = prompts_for(problems, cfg)
    greedy = sampler(prompts, 0.0, 1, settings.seed)
    metrics = {f"{prefix}/pass@1 (greedy)":
               mean_pass_at_k(passed_counts(problems, greedy, cfg, run_many), 1)}
    if settings.samples:
        sampled = sampler(prompts, settings.temperature, settings.samples, settings.seed)
        counts = passed_counts(problems, sampled, cfg, run_many)
        for k in settings.ks:
            if k <= settings.samples:
                metrics[f"{prefix}/pass@{k} (T={settings.temperature:g}, "
                        f"n={settings.samples})"] = mean_pass_at_k(counts, k)
    return metrics


def benchmark_metrics(hf_dir: str | Path, options: EvalOptions) -> dict[str, float]:
    """HumanEval / infilling pass rates of one HF model dir (the `summary` of `mrrtf eval`)."""
    from megatron_rrtf.eval.checkpoint_eval import evaluate_checkpoint

    summary = evaluate_checkpoint(hf_dir, options)["summary"]
    lost = summary.pop("sandbox_harness_errors", 0)
    if lost:
        log.warning("%s: %d benchmark verdicts were lost to sandbox harness errors (counted "
                    "as failures)", hf_dir, lost)
    return {k: v for k, v in summary.items() if v is not None}


def evaluate_model(model: str | Path, problems: Sequence[Problem], cfg: RRTFConfig,
                   settings: HeldoutEval, benchmarks: EvalOptions | None = None
                   ) -> dict[str, float]:
    """One table column: held-out pass@k of `model` (an HF dir, or a run or step dir exported
    through the one export cache) and, with `benchmarks`, its HumanEval / infilling rows."""
    from align.rank import verdict_runner
    from align.sample import model_sampler
    from megatron_rrtf.convert.export_cache import hf_model_dir

    hf = hf_model_dir(model)
    metrics = heldout_metrics(problems, model_sampler(hf, cfg.student, cfg), cfg, settings,
                              verdict_runner(cfg))
    if benchmarks is not None:
        metrics |= benchmark_metrics(hf, benchmarks)
    return metrics


def comparison(columns: Mapping[str, Mapping[str, float]], baseline: str = "before"
               ) -> dict[str, Any]:
    """{"baseline", "columns", "metrics": {metric: {column: {"before", "after", "delta"}}}}:
    every non-baseline column against the baseline, per metric the baseline has."""
    if baseline not in columns:
        raise ConfigError(f"comparison needs the baseline column {baseline!r}, got "
                          f"{list(columns)}")
    base = columns[baseline]
    others = [c for c in columns if c != baseline]
    metrics: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, before in base.items():
        metrics[name] = {}
        for col in others:
            after = columns[col].get(name)
            metrics[name][col] = {"before": before, "after": after,
                                  "delta": None if after is None else after - before}
    return {"baseline": baseline, "columns": others, "metrics": metrics}


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def comparison_markdown(table: Mapping[str, Any]) -> str:
    """| metric | before | <col> | Δ <col> | ... | in percent."""
    cols = table["columns"]
    head = f"| metric (%) | {table['baseline']} | " + " | ".join(
        f"{c} | Δ {c}" for c in cols) + " |"
    rule = "|---|---:|" + "---:|---:|" * len(cols)
    lines = [head, rule]
    for name, per_col in table["metrics"].items():
        before = next(iter(per_col.values()))["before"] if per_col else None
        cells = " | ".join(f"{_pct(per_col[c]['after'])} | {_pct(per_col[c]['delta'], True)}"
                           for c in cols)
        lines.append(f"| {name} | {_pct(before)} | {cells} |")
    return "\n".join(lines) + "\n"


def write_comparison(out_prefix: str | Path, columns: Mapping[str, Mapping[str, float]],
                     baseline: str = "before") -> dict[str, Any]:
    """Write <out_prefix>.json and <out_prefix>.md; return the table."""
    table = comparison(columns, baseline)
    table["values"] = {k: dict(v) for k, v in columns.items()}
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    out.with_suffix(".md").write_text(comparison_markdown(table))
    return table
