"""The comparison grid's report: REPORT_DIR/report.md and its PNGs, from the runs' records.

Built only from the records `eval.grid.execute` writes (one per run and seed: setting, seed,
train summary, train loss curve, `mrrtf eval` summary), so it renders from synthetic records in
tests and from a partly finished grid. Up front, the lesson table: for each lesson the grid
covers, CodeGen2's finding (or Bavarian et al. 2022's "FIM for free" beside CodeGen2's "infill
is not free"), our measurement (difference of seed means), whether it is beyond seed noise
(`eval.seeds`: |Δmean| > 2 standard errors) and whether it agrees. Then one table per axis
(mean ± sd over seeds; `*` marks a cell that differs from the axis' first setting beyond
noise), infill loss per prompt format and mask type, and plots: smoothed training curves (EMA
over the faint raw mean of the seeds) and bars with ± sd error bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_rrtf.eval.seeds import RULE, SeedStats, aggregate, beyond_noise, format_stats

INFILL_FORMATS = ("span", "fim_psm", "fim_spm")
INFILL_KINDS = ("single_line", "multi_line", "random_span")
NOT_EVALUATED = "not evaluated"


@dataclass(frozen=True)
class Lesson:
    title: str
    axis: str
    setting: str
    baseline: str
    metric: str
    """A key of `run_metrics`; "code loss" is the first code domain's held-out loss."""
    finding: str
    expect: str
    """"higher" / "lower" (setting vs baseline) or "same": what the finding predicts here."""


LESSONS = (
    Lesson("Infill is not free", "objectives", "causal+span", "causal", "code loss",
           "CodeGen2: adding span corruption to causal LM costs left-to-right performance "
           "(HumanEval) at equal compute", "higher"),
    Lesson("FIM for free", "objectives", "causal+fim", "causal", "code loss",
           "Bavarian et al. 2022: FIM at rate 0.5 leaves left-to-right loss unchanged", "same"),
    Lesson("Prefix-LM", "objectives", "causal+prefix_lm", "causal", "code loss",
           "CodeGen2: a bidirectional prefix (prefix-LM) brings no gain over a causal decoder",
           "same"),
    Lesson("Span corruption teaches infilling", "objectives", "causal+span", "causal",
           "infill bpb span",
           "CodeGen2: span corruption makes the model infill with sentinel prompts; causal LM "
           "alone does not", "lower"),
    Lesson("FIM teaches infilling", "objectives", "causal+fim", "causal", "infill bpb fim_psm",
           "Bavarian et al. 2022: FIM-trained models infill; left-to-right-only ones cannot",
           "lower"),
    Lesson("Mixing NL with code", "data", "code+nl", "code", "code loss",
           "CodeGen2: code + natural language at equal code tokens stays close to code-only on "
           "code, and learns NL besides", "same"),
    Lesson("Multi-epoch training", "epochs", "4passes", "1pass", "code loss",
           "CodeGen2 (with CodeGen2.5: several epochs over StarCoderData): repeating code data "
           "for a few epochs is viable; Muennighoff et al. 2023: up to ~4 epochs cost little",
           "same"),
)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def run_metrics(record: Mapping[str, Any]) -> dict[str, float | None]:
    """One run's numbers for the tables: "<domain> loss|bpb", "code loss|bpb" (first code
    domain), "infill bpb <fmt>" (mean over mask types), "infill bpb <fmt>/<kind>", "infill loss
    <fmt>", "exact match" (mean over formats and mask types), "humaneval pass@1" (greedy) and
    "infill pass@1" (mean) when evaluated, "train time (s)"."""
    out: dict[str, float | None] = {}
    summary = ((record.get("eval") or {}).get("summary")) or {}
    domains = sorted({k.split("/", 1)[1].rsplit("/", 1)[0] for k in summary
                      if k.startswith("ppl/") and k.endswith("/loss")})
    for d in domains:
        out[f"{d} loss"] = summary.get(f"ppl/{d}/loss")
        out[f"{d} bpb"] = summary.get(f"ppl/{d}/bpb")
    code = [d for d in domains if d.split("/")[0] == "code"]
    if code:
        out["code loss"], out["code bpb"] = out[f"{code[0]} loss"], out[f"{code[0]} bpb"]
    matches = []
    for fmt in INFILL_FORMATS:
        bpbs, losses = [], []
        for kind in INFILL_KINDS:
            prefix = f"infill_loss/{fmt}/{kind}/"
            out[f"infill bpb {fmt}/{kind}"] = summary.get(prefix + "bpb")
            bpbs.append(summary.get(prefix + "bpb"))
            losses.append(summary.get(prefix + "loss"))
            matches.append(summary.get(prefix + "exact_match"))
        out[f"infill bpb {fmt}"] = _mean(bpbs)
        out[f"infill loss {fmt}"] = _mean(losses)
    out["exact match"] = _mean(matches)
    # pass@k, when evaluated (--humaneval): 0 for tiny models, kept for larger ones
    out["humaneval pass@1"] = summary.get("humaneval/greedy/pass@1")
    out["infill pass@1"] = _mean([summary.get(f"infill/{f}/{k}/pass@1")
                                  for f in INFILL_FORMATS for k in INFILL_KINDS])
    out["train time (s)"] = (record.get("train") or {}).get("train_time_s")
    return out


def aggregate_settings(records: Sequence[Mapping[str, Any]]
                       ) -> dict[tuple[str, str], dict[str, SeedStats | None]]:
    """(axis, setting) -> metric -> mean ± sd over the setting's seeds, in record order."""
    by_setting: dict[tuple[str, str], list[dict[str, float | None]]] = {}
    for record in records:
        by_setting.setdefault((record["axis"], record["setting"]), []).append(
            run_metrics(record))
    out = {}
    for key, runs in by_setting.items():
        names = sorted({m for run in runs for m in run})
        out[key] = {m: aggregate([run.get(m) for run in runs]) for m in names}
    return out


def _agrees(lesson: Lesson, delta: float, marked: bool | None) -> str:
    if marked is None:
        return "cannot say"
    if not marked:
        return "yes" if lesson.expect == "same" else "not seen at this scale"
    direction = "higher" if delta > 0 else "lower"
    return "yes" if direction == lesson.expect else f"no ({direction})"


def lesson_rows(stats: Mapping[tuple[str, str], Mapping[str, SeedStats | None]]
                ) -> list[list[str]]:
    """One row per lesson whose two settings are in the grid."""
    rows = []
    for lesson in LESSONS:
        a, b = (lesson.axis, lesson.setting), (lesson.axis, lesson.baseline)
        if a not in stats or b not in stats:
            continue
        sa, sb = stats[a].get(lesson.metric), stats[b].get(lesson.metric)
        if sa is None or sb is None:
            rows.append([lesson.title, lesson.finding, f"{lesson.metric}: {NOT_EVALUATED}",
                         "–", "–"])
            continue
        delta = sa.mean - sb.mean
        marked = beyond_noise(sa, sb)
        rows.append([
            lesson.title, lesson.finding,
            f"{lesson.metric}: {lesson.setting} − {lesson.baseline} = {delta:+.3f} "
            f"({format_stats(sa)} vs {format_stats(sb)}, {min(sa.n, sb.n)} seeds)",
            {None: "n/a (needs ≥ 2 seeds)", True: "yes", False: "no"}[marked],
            _agrees(lesson, delta, marked)])
    return rows


def free_or_not(stats: Mapping[tuple[str, str], Mapping[str, SeedStats | None]]) -> list[str]:
    """Which of "FIM for free" (Bavarian et al.) and "infill is not free" (CodeGen2) holds here:
    one sentence per infill objective in the grid, from its held-out code loss vs causal."""
    base = (stats.get(("objectives", "causal")) or {}).get("code loss")
    lines = []
    for setting, name in (("causal+fim", "FIM"), ("causal+span", "span corruption")):
        other = (stats.get(("objectives", setting)) or {}).get("code loss")
        marked = beyond_noise(other, base)
        if marked is None:
            continue
        delta = other.mean - base.mean
        if not marked:
            lines.append(f"- {name} (causal 0.5 + {name} 0.5): Δ code loss {delta:+.3f}, within "
                         "seed noise: infilling came for free at this scale.")
        elif delta > 0:
            lines.append(f"- {name} (causal 0.5 + {name} 0.5): Δ code loss {delta:+.3f}, beyond "
                         "seed noise: infill is not free at this scale.")
        else:
            lines.append(f"- {name} (causal 0.5 + {name} 0.5): Δ code loss {delta:+.3f}, beyond "
                         "seed noise in the model's favour: better than free at this scale.")
    return (["Which holds here, \"FIM for free\" or \"infill is not free\":", "", *lines, ""]
            if lines else [])


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


AXIS_METRICS = ("code loss", "code bpb", "nl bpb", "infill bpb span", "infill bpb fim_psm",
                "infill bpb fim_spm", "exact match", "humaneval pass@1", "infill pass@1",
                "train time (s)")


def _cell(stats: SeedStats | None, base: SeedStats | None, is_base: bool,
          digits: int = 3) -> str:
    if stats is None:
        return NOT_EVALUATED
    text = format_stats(stats, digits)
    return text + (" *" if not is_base and beyond_noise(stats, base) else "")


def axis_table(axis: str, stats: Mapping[tuple[str, str], Mapping[str, SeedStats | None]],
               records: Sequence[Mapping[str, Any]]) -> str:
    settings = [s for (a, s) in stats if a == axis]
    metrics = [m for m in AXIS_METRICS  # code loss always: "not evaluated" shows there
               if m == "code loss" or any(stats[(axis, s)].get(m) for s in settings)]
    base = stats[(axis, settings[0])]
    rows = []
    for s in settings:
        runs = [r for r in records if r["axis"] == axis and r["setting"] == s]
        rows.append([s, len(runs), runs[0].get("steps"), *[
            _cell(stats[(axis, s)].get(m), base.get(m), s == settings[0],
                  0 if m.startswith("train time") else 3) for m in metrics]])
    return _table(["setting", "seeds", "steps", *metrics], rows)


def infill_table(axis: str, stats: Mapping[tuple[str, str], Mapping[str, SeedStats | None]]
                 ) -> str | None:
    settings = [s for (a, s) in stats if a == axis]
    if not any(stats[(axis, s)].get(f"infill bpb {f}/{k}") for s in settings
               for f in INFILL_FORMATS for k in INFILL_KINDS):
        return None
    base = stats[(axis, settings[0])]
    rows = [[s, f, *[_cell(stats[(axis, s)].get(f"infill bpb {f}/{k}"),
                           base.get(f"infill bpb {f}/{k}"), s == settings[0])
                     for k in INFILL_KINDS]] for s in settings for f in INFILL_FORMATS]
    return _table(["setting", "format", *INFILL_KINDS], rows)


def _settings_list(axis: str, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per setting: what it is, and the passes its runs made over each source."""
    lines = []
    for setting in dict.fromkeys(r["setting"] for r in records if r["axis"] == axis):
        first = next(r for r in records if r["axis"] == axis and r["setting"] == setting)
        line = f"- {setting}: {first.get('describe') or setting}"
        epochs = (first.get("train") or {}).get("effective_epochs")
        if epochs:
            line += "; passes over each source's training data: " + ", ".join(
                f"{name} {value:.2f}" for name, value in epochs.items())
        lines.append(line)
    return lines


def render_grid_report(records: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                       plots: Sequence[Path] = ()) -> str:
    """report.md's text. `meta`: command, steps, seeds, quick, preset, machine, wall_time_s."""
    stats = aggregate_settings(records)
    axes = list(dict.fromkeys(r["axis"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    wall = meta.get("wall_time_s")
    parts = ["# Objective comparison grid", "",
             f"Generated by `{meta.get('command', 'mrrtf compare-demo')}`"
             + (" — **quick mode: fewer steps and seeds than the full grid**"
                if meta.get("quick") else "") + ".",
             "", f"- axes: {', '.join(axes)}; {len(records)} runs; seeds {len(seeds)} "
                 f"(train.seed = data.seed = base + k, k in {seeds})",
             f"- model: {meta.get('preset', '?')}; {meta.get('steps', '?')} steps per run "
             "(the data axis' code + NL run: more, for equal code tokens)",
             f"- machine: {meta.get('machine', '?')}",
             (f"- wall time: {wall / 60:.1f} min in all (this invocation; runs it found "
              "finished were skipped)" if isinstance(wall, (int, float))
              else "- wall time: not recorded"),
             f"- run time: {meta['run_time_s'] / 60:.1f} min summed over the runs' training "
             "and evaluation" if isinstance(meta.get("run_time_s"), (int, float))
             else "- run time: not recorded",
             f"- noise rule: {RULE}; `*` marks a cell beyond noise of the axis' first setting",
             ""]
    rows = lesson_rows(stats)
    parts += ["## Lessons", ""]
    if rows:
        parts += [_table(["lesson", "finding (paper)", "our measurement",
                          "beyond seed noise?", "agrees?"], rows), ""]
        parts += ["Findings paraphrased from CodeGen2 (Nijkamp et al. 2023, arXiv:2305.02309; "
                  "CodeGen2.5), Bavarian et al. 2022 (arXiv:2207.14255) and Muennighoff et al. "
                  "2023 (arXiv:2305.16264), at their scales (1B+ parameters); \"agrees?\" "
                  "reads the measured Δ against the direction each finding predicts.", ""]
        parts += free_or_not(stats)
    else:
        parts += ["No lesson's settings are in this grid.", ""]
    parts += ["Code loss / bpb: held-out causal LM loss on the code domain (`mrrtf eval` "
              "perplexity). Infill bpb: bits per byte of the true middle given prefix and "
              "suffix, on holes cut in held-out code, mean over the three mask types "
              "(`eval.infill_loss`). Exact match: greedy middle equal to the truth after "
              "whitespace normalisation, mean over formats and mask types.", ""]
    for axis in axes:
        parts += [f"## Axis: {axis}", "", axis_table(axis, stats, records), ""]
        parts += _settings_list(axis, records) + [""]
        infill = infill_table(axis, stats)
        if infill:
            parts += [f"### Infill bits per byte by format and mask type ({axis})", "", infill,
                      ""]
    missing = [r["key"] for r in records if not r.get("eval")]
    if missing:
        parts += [f"Not evaluated ({len(missing)} runs): " + ", ".join(missing[:10])
                  + (" …" if len(missing) > 10 else ""), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(parts)


def _mean_curve(records: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """The seeds' mean train loss per step (curves cut to the shortest)."""
    curves = [r.get("curve") or [] for r in records]
    n = min((len(c) for c in curves), default=0)
    if n == 0:
        return [], []
    xs = [curves[0][i][0] for i in range(n)]
    ys = [sum(c[i][1] for c in curves) / len(curves) for i in range(n)]
    return xs, ys


def grid_plots(records: Sequence[Mapping[str, Any]], out: Path,
               smoothing: float = 0.9) -> list[Path]:
    """train_curves.png (per axis: EMA of the seeds' mean over the faint raw mean) and
    code_loss.png / infill_bpb.png (mean ± sd bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from megatron_rrtf.training.plots import plot_smoothed

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    axes = list(dict.fromkeys(r["axis"] for r in records))
    stats = aggregate_settings(records)
    fig, panels = plt.subplots(1, len(axes), figsize=(5.5 * len(axes), 3.8), squeeze=False)
    for ax, axis in zip(panels[0], axes):
        for (a, setting) in stats:
            if a != axis:
                continue
            xs, ys = _mean_curve([r for r in records
                                  if r["axis"] == axis and r["setting"] == setting])
            if xs:
                plot_smoothed(ax, xs, ys, setting, smoothing)
        ax.set_title(f"{axis}: train loss, seed mean (EMA {smoothing:g} over raw)")
        ax.set_xlabel("training tokens")
        ax.set_ylabel("loss (own objective mixture)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(out / "train_curves.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    def bars(path: str, title: str, metrics: Sequence[str], ylabel: str) -> None:
        keys = [k for k in stats if any(stats[k].get(m) for m in metrics)]
        if not keys:
            return
        fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(keys) * len(metrics) ** 0.5), 3.8))
        width = 0.8 / len(metrics)
        x = np.arange(len(keys))
        for i, m in enumerate(metrics):
            s = [stats[k].get(m) for k in keys]
            ax.bar(x + i * width, [v.mean if v else math.nan for v in s], width,
                   yerr=[(v.sd or 0.0) if v else 0.0 for v in s], capsize=3, label=m)
        ax.set_xticks(x + width * (len(metrics) - 1) / 2,
                      [f"{a}\n{s}" for a, s in keys], fontsize=7)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
        if len(metrics) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / path)
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    bars("code_loss.png", "held-out code loss (mean ± sd over seeds)", ["code loss"],
         "nats/token")
    bars("infill_bpb.png", "infill bits per byte on held-out code (mean ± sd)",
         [f"infill bpb {f}" for f in INFILL_FORMATS], "bits/byte")
    return written


def write_grid_report(records: Sequence[Mapping[str, Any]], out_dir: str | Path,
                      meta: Mapping[str, Any]) -> Path:
    """Write out_dir/report.md and its PNGs; returns the report's path."""
    out = Path(out_dir)
    plots = grid_plots(records, out)
    path = out / "report.md"
    path.write_text(render_grid_report(records, meta, plots))
    return path
