"""The CodeGen2-style comparison of runs: REPORT_DIR/report.md (Markdown tables) and PNGs.

Per run it reads RUN/metrics.jsonl (train and eval records) and RUN/eval/results.json (written by
`mrrtf eval`); a run without results is shown as "not evaluated". Sections: the runs (objective
mixture, steps, tokens, final train loss overall and per objective), held-out loss per domain
over tokens (from the training loop's eval records), perplexity and bits-per-byte per domain,
HumanEval pass@1 / pass@10, infilling pass@1 per prompt format and mask type, and infill loss
(bits per byte) / exact match on held-out code. Train curves are smoothed over the raw ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from megatron_rrtf.errors import DataError
from megatron_rrtf.training.plots import read_run_metrics

NOT_EVALUATED = "not evaluated"
INFILL_FORMATS = ("span", "fim_psm", "fim_spm")
INFILL_KINDS = ("single_line", "multi_line", "random_span")
OBJECTIVES = ("causal", "span", "fim", "prefix_lm")


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """{"name", "dir", "records", "config", "results" (None if not evaluated)}."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist")
    records = read_run_metrics(run_dir)
    config = None
    if (run_dir / "config.yaml").is_file():
        import yaml

        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    results_path = run_dir / "eval" / "results.json"
    results = None
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{results_path} is not valid JSON ({exc}); rerun mrrtf eval") from exc
    return {"name": run_dir.resolve().name, "dir": run_dir, "records": records, "config": config,
            "results": results}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _train(run: dict) -> list[dict]:
    return [r for r in run["records"] if r.get("kind") == "train"]


def _last(records: list[dict], key: str, window: int = 20) -> float | None:
    """Mean of the last `window` values of `key` (train losses are noisy per step)."""
    values = [r[key] for r in records if r.get(key) is not None][-window:]
    return sum(values) / len(values) if values else None


def _mixture(run: dict) -> str:
    rates = ((run["config"] or {}).get("objectives") or {}).get("rates") or {}
    total = sum(rates.values()) or 1.0
    return " + ".join(f"{name} {rates[name] / total:.2f}" for name in OBJECTIVES
                      if rates.get(name))


def _eval_curves(run: dict) -> dict[str, tuple[list[float], list[float]]]:
    """domain -> (consumed tokens, held-out loss) from the eval records."""
    tokens_at = {r["step"]: r.get("consumed_tokens") for r in _train(run)}
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for r in run["records"]:
        if r.get("kind") != "eval":
            continue
        for key, value in r.items():
            if key.startswith("eval/") and key.endswith("/loss") and value is not None:
                xs, ys = curves.setdefault(key[5:-5], ([], []))
                xs.append(tokens_at.get(r["step"]) or r["step"])
                ys.append(value)
    return curves


def _pass(results: dict | None, *path: str) -> Any:
    node: Any = (results or {}).get("tasks")
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _plots(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    domains = sorted({d for run in runs for d in _eval_curves(run)})
    if domains:
        fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 3.6), squeeze=False)
        for ax, domain in zip(axes[0], domains):
            for run in runs:
                xs, ys = _eval_curves(run).get(domain, ([], []))
                if xs:
                    ax.plot(xs, ys, marker="o", markersize=3, label=run["name"], linewidth=1)
            ax.set_title(f"held-out loss: {domain}")
            ax.set_xlabel("training tokens")
            ax.set_ylabel("loss (nats/token)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "heldout_loss.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    def bars(path: str, title: str, groups: list[str], series: dict[str, list[float | None]],
             ylabel: str) -> None:
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups)
                                            + 0.15 * len(groups) * len(series)), 3.8))
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(groups))
        top = 0.0
        for i, (label, values) in enumerate(series.items()):
            bars_ = ax.bar(x + i * width, [v if v is not None else 0.0 for v in values], width,
                           label=label)
            ax.bar_label(bars_, labels=["" if v is None else f"{v:.2f}" for v in values],
                         fontsize=6)
            top = max([top] + [v for v in values if v is not None])
        ax.set_ylim(0, max(top * 1.15, 0.05))
        ax.set_xticks(x + width * (len(series) - 1) / 2, groups, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / path)
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    keys = ["loss"] + [f"loss/{o}" for o in OBJECTIVES]
    bars("final_train_loss.png", "final train loss (mean of last 20 steps)", keys,
         {run["name"]: [_last(_train(run), k) for k in keys] for run in runs}, "loss")
    evaluated = [run for run in runs if run["results"]]
    if evaluated and domains:
        bars("bits_per_byte.png", "held-out bits per byte (mrrtf eval)", domains,
             {run["name"]: [_pass(run["results"], "perplexity", d, "bits_per_byte")
                            for d in domains] for run in evaluated}, "bits/byte")
    if evaluated:
        groups = [f"{f}\n{k.split('_')[0]}" for f in INFILL_FORMATS for k in INFILL_KINDS]
        bars("infill_pass1.png", "infilling pass@1 (greedy)", groups,
             {run["name"]: [_pass(run["results"], "infill", f, k, "pass@1")
                            for f in INFILL_FORMATS for k in INFILL_KINDS]
              for run in evaluated}, "pass@1")
    return written


def _infill_loss_section(runs: list[dict]) -> list[str]:
    """Infill bits per byte / exact match on held-out code (`mrrtf eval` task infill_loss);
    nothing when no run has it (results from before the task existed)."""
    if not any(_pass(run["results"], "infill_loss") for run in runs):
        return []
    rows = []
    for run in runs:
        r = _pass(run["results"], "infill_loss")
        if r is None:
            rows.append([run["name"], NOT_EVALUATED] + [""] * len(INFILL_KINDS))
            continue
        if "skipped" in r:
            rows.append([run["name"], f"skipped: {r['skipped']}"]
                        + [""] * len(INFILL_KINDS))
            continue
        for fmt in INFILL_FORMATS:
            cells = r.get(fmt)
            if cells is None:
                continue
            if "skipped" in cells:
                rows.append([run["name"], fmt, f"skipped: {cells['skipped']}"]
                            + [""] * (len(INFILL_KINDS) - 1))
                continue
            rows.append([run["name"], fmt] + [
                "–" if not cells.get(k, {}).get("num_tasks") else
                f"{cells[k]['bits_per_byte']:.3f}"
                + (f" / {cells[k]['exact_match']:.3f}" if "exact_match" in cells[k] else "")
                for k in INFILL_KINDS])
    return ["## Infill loss on held-out code: bits per byte of the true middle / exact match",
            "", "Given prefix and suffix in each prompt format; holes cut in the run's own "
            "held-out code (`eval.infill_loss`). Lower bits per byte is better.", "",
            _table(["run", "format"] + list(INFILL_KINDS), rows), ""]


def render_report(runs: list[dict], plots: list[Path], note: str = "") -> str:
    """report.md's text."""
    parts = ["# Objective comparison", ""]
    if note:
        parts += [note, ""]
    parts += ["## Runs", "", _table(
        ["run", "objective mixture", "steps", "tokens", "train time (s)", "final loss"]
        + [f"loss/{o}" for o in OBJECTIVES],
        [[run["name"], _mixture(run) or "–", (_train(run) or [{}])[-1].get("step"),
          (_train(run) or [{}])[-1].get("consumed_tokens"),
          round(sum(r.get("step_time_s") or 0 for r in _train(run))),
          _last(_train(run), "loss")] + [_last(_train(run), f"loss/{o}") for o in OBJECTIVES]
         for run in runs]),
        "", "Final losses: mean over the last 20 steps, on each run's own training objective "
        "mixture (span / FIM losses are over the moved spans / middles only), so the `loss` "
        "column is not comparable across mixtures; the held-out losses below are.", ""]
    domains = sorted({d for run in runs for d in _eval_curves(run)})
    parts += ["## Held-out loss per domain (training loop, causal LM)", "",
              _table(["run"] + domains,
                     [[run["name"]] + [(_eval_curves(run).get(d, ([], [None]))[1] or [None])[-1]
                                       for d in domains] for run in runs]), ""]
    ppl_domains = sorted({d for run in runs for d in (_pass(run["results"], "perplexity") or {})
                          if d != "skipped"})
    rows = []
    for run in runs:
        ppl = _pass(run["results"], "perplexity")
        if run["results"] is None or ppl is None:
            rows.append([run["name"]] + [NOT_EVALUATED] * (2 * len(ppl_domains) or 1))
        elif "skipped" in ppl:
            rows.append([run["name"]] + [f"skipped: {ppl['skipped']}"]
                        + [""] * (2 * len(ppl_domains) - 1))
        else:
            rows.append([run["name"]] + [v for d in ppl_domains
                                         for v in (ppl.get(d, {}).get("loss"),
                                                   ppl.get(d, {}).get("bits_per_byte"))])
    parts += ["## Perplexity and bits per byte (mrrtf eval, all held-out samples)", "",
              _table(["run"] + ([f"{d} {m}" for d in ppl_domains for m in ("loss", "bpb")]
                                or ["perplexity"]), rows), ""]
    rows = []
    for run in runs:
        he = _pass(run["results"], "humaneval")
        if he is None:
            rows.append([run["name"], NOT_EVALUATED, "", "", "", ""])
            continue
        sampled = he.get("sampled") or {}
        rows.append([run["name"], he.get("num_problems"),
                     (he.get("greedy") or {}).get("pass@k", {}).get("1"),
                     sampled.get("pass@k", {}).get("1"), sampled.get("pass@k", {}).get("10"),
                     f"n={sampled.get('num_samples')}, T={sampled.get('temperature')}, "
                     f"top_p={sampled.get('top_p')}" if sampled else "greedy only"])
    parts += ["## HumanEval", "", _table(["run", "problems", "greedy pass@1", "sampled pass@1",
                                          "pass@10", "sampling"], rows), ""]
    rows = []
    for run in runs:
        infill = _pass(run["results"], "infill")
        if infill is None:
            rows.append([run["name"], NOT_EVALUATED] + [""] * len(INFILL_KINDS))
            continue
        for fmt in INFILL_FORMATS:
            r = infill.get(fmt)
            if r is None:
                continue
            if "skipped" in r:
                rows.append([run["name"], fmt, f"skipped: {r['skipped']}"]
                            + [""] * (len(INFILL_KINDS) - 1))
            else:
                rows.append([run["name"], fmt] + [r.get(k, {}).get("pass@1")
                                                  for k in INFILL_KINDS])
    parts += ["## Infilling pass@1 (greedy), by prompt format and mask type", "",
              _table(["run", "format"] + list(INFILL_KINDS), rows), ""]
    parts += _infill_loss_section(runs)
    settings = []
    for run in runs:
        if run["results"]:
            o = run["results"].get("options", {})
            t = _pass(run["results"], "infill", "num_tasks") or {}
            settings.append(f"- {run['name']}: step {run['results'].get('step')}, "
                            f"HumanEval problems {o.get('limit') or 164}, max new tokens "
                            f"{o.get('max_new_tokens')}, infill tasks {t}, seed {o.get('seed')}, "
                            f"eval wall time {run['results'].get('wall_time_s', 0):.0f} s")
        else:
            settings.append(f"- {run['name']}: {NOT_EVALUATED} (no {run['dir']}/eval/"
                            "results.json; run `mrrtf eval` on it)")
    parts += ["## Evaluation settings", "", *settings, ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(parts)


def write_report(run_dirs: list[str | Path], out_dir: str | Path, note: str = "") -> Path:
    """Write out_dir/report.md and its PNGs; returns the report's path."""
    from megatron_rrtf.training.plots import plot_runs

    if not run_dirs:
        raise DataError("compare needs at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    if len({r["name"] for r in runs}) < len(runs):
        for r in runs:
            r["name"] = str(r["dir"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(runs, out)
    plots += [p for p in plot_runs(run_dirs, out) if p.name == "train_loss.png"]
    stale = out / "eval_loss.png"  # plot_runs' per-step version of heldout_loss.png
    stale.unlink(missing_ok=True)
    report = out / "report.md"
    report.write_text(render_report(runs, plots, note))
    return report
