"""`mrrtf compare RUN_DIR ... --out REPORT_DIR`: the CodeGen2-style comparison of runs as
REPORT_DIR/report.md and PNGs, from each run's metrics.jsonl and RUN/eval/results.json."""

from __future__ import annotations

import argparse

HELP = "compare runs (losses, held-out bpb, HumanEval, infilling) into a Markdown report + PNGs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories (metrics.jsonl; eval/results.json "
                                           "from mrrtf eval, if evaluated)")
    p.add_argument("--out", required=True, help="report directory (report.md + PNGs)")
    p.add_argument("--note", default="", help="a paragraph put at the top of the report")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.eval.compare import write_report

    print(write_report(args.runs, args.out, note=args.note))
    return 0
