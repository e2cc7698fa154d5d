"""The "does ranking add to SFT?" study's numbers: what a ranked file offers beyond the teacher's
best answer, and the Markdown report over seeds (pure functions over JSON records).

What a ranked set offers beyond SFT on the best teacher answer is the student's place in it:
  student_samples / student_passed   the student's responses and how many pass all tests
  student_above_other                pairs (student response, any other response of the same
                                     problem) where the student scores strictly higher: order
                                     information SFT on a teacher answer cannot carry
  student_ties_teacher               pairs (student, teacher) at an equal score (RRTF's tie rule
                                     weights these by rrtf.tie_weight)
  problems_only_student_passes       problems where a student response passes and no teacher one
                                     does (RRHF's SFT target is then a student answer)
With a student that never passes (the one-round demo), student_above_other counts only
compile-error-over-compile-error pairs and the other counts are ~0.

The report: held-out pass@1 (greedy) per seed and arm, mean ± sd over seeds
(megatron_rrtf.eval.seeds), and each pair of arms marked beyond seed noise or not by that
module's rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from megatron_rrtf.eval.seeds import RULE, SeedStats, aggregate, format_stats, verdict

ARMS = ("rrtf", "rrhf", "sft", "sft_rrhf")
"""The arms trained from the same round-1 model on the same ranked file, in report order:
rrtf and rrhf (the two ranking losses), sft (rrtf.loss=rrtf with rrtf.rank_weight=0: the summed
token NLL of the best teacher answer, i.e. RRTF without its ranking term) and sft_rrhf
(rrtf.loss=rrhf with rrtf.rank_weight=0: RRHF without its ranking term, the mean token NLL of
the best response, a student one where only a student passes)."""
LABELS = {"start": "round 1 (start)", "rrtf": "RRTF", "rrhf": "RRHF", "sft": "SFT-only",
          "sft_rrhf": "SFT-only (RRHF's CE)"}
COUNT_NAMES = ("student_samples", "student_passed", "student_above_other",
               "student_ties_teacher", "problems_only_student_passes")


def pair_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """COUNT_NAMES (+ student_pass_share) over ranked records (align.rank.ranked_record)."""
    counts = dict.fromkeys(COUNT_NAMES, 0)
    for rec in records:
        responses = rec["responses"]
        students = [r for r in responses if not r["is_teacher"]]
        teachers = [r for r in responses if r["is_teacher"]]
        counts["student_samples"] += len(students)
        counts["student_passed"] += sum(r["category"] == "passed" for r in students)
        for s in students:
            counts["student_above_other"] += sum(
                s["score"] > o["score"] for o in responses if o is not s)
            counts["student_ties_teacher"] += sum(s["score"] == t["score"] for t in teachers)
        if any(r["category"] == "passed" for r in students) and \
                not any(r["category"] == "passed" for r in teachers):
            counts["problems_only_student_passes"] += 1
    n = counts["student_samples"]
    return counts | {"student_pass_share": counts["student_passed"] / n if n else 0.0}


def _pct(records: Sequence[Mapping[str, Any]], column: str) -> SeedStats | None:
    return aggregate([100 * r["pass@1"][column] if column in r["pass@1"] else None
                      for r in records])


def study_report(records: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown report of per-seed study records (align.study.run_study_seed)."""
    arms = [a for a in ARMS if any(a in r["pass@1"] for r in records)]
    columns = ["start", *arms]
    lines = ["# Does ranking add to SFT? Held-out pass@1 (greedy, %)", "",
             "| seed | " + " | ".join(LABELS[c] for c in columns)
             + " | student pass share (%) | student-above pairs | student=teacher ties "
               "| wall (s) |",
             "|---|" + "---:|" * (len(columns) + 4)]
    for r in records:
        c = r["round2"]
        cells = [f"{100 * r['pass@1'][col]:.1f}" if col in r["pass@1"] else "–"
                 for col in columns]
        lines.append(f"| {r['seed']} | " + " | ".join(cells)
                     + f" | {100 * c['student_pass_share']:.1f} | {c['student_above_other']} "
                       f"| {c['student_ties_teacher']} | {r.get('seconds', 0):.0f} |")
    stats = {col: _pct(records, col) for col in columns}
    share = aggregate([100 * r["round2"]["student_pass_share"] for r in records])
    above = aggregate([r["round2"]["student_above_other"] for r in records])
    ties = aggregate([r["round2"]["student_ties_teacher"] for r in records])
    lines.append("| mean ± sd | " + " | ".join(format_stats(stats[c], 1) for c in columns)
                 + f" | {format_stats(share, 1)} | {format_stats(above, 0)} "
                   f"| {format_stats(ties, 0)} | |")
    lines += ["", "## Pairs of arms", "",
              "| comparison | Δ mean (points) | beyond seed noise? | Δ per seed |",
              "|---|---:|---|---|"]
    for a, b in [*combinations(arms, 2), *((arm, "start") for arm in arms)]:
        sa, sb = stats[a], stats[b]
        delta = f"{sa.mean - sb.mean:+.1f}" if sa and sb else "–"
        per_seed = ", ".join(f"{100 * (r['pass@1'][a] - r['pass@1'][b]):+.1f}" for r in records
                             if a in r["pass@1"] and b in r["pass@1"])
        lines.append(f"| {LABELS[a]} − {LABELS[b]} | {delta} | {verdict(sa, sb)} "
                     f"| {per_seed or '–'} |")
    lines += ["", f"Rule: {RULE}. n = {len(records)} seeds.", "",
              "Student pass share: the round-2 student's (the round-1 model's) samples on the "
              "training problems that pass all tests. Student-above pairs: (student, other "
              "response) pairs of one problem where the student scores higher; ties: (student, "
              "teacher) pairs at an equal score (align/study_report.py). Δ per seed: the arms "
              "share their start and data within a seed, so a sign that holds on every seed is "
              "worth reading beside the mark."]
    return "\n".join(lines) + "\n"
