"""`mrrtf plot RUN_DIR [RUN_DIR ...] [--out DIR]`: loss curves of one or several runs as PNGs."""

from __future__ import annotations

import argparse

HELP = "draw loss curves (per objective, per eval domain) of one or several runs into PNGs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories (each holds metrics.jsonl)")
    p.add_argument("--out", default=None, help="output directory (default: RUN_DIR/plots of the "
                                               "first run)")
    p.add_argument("--smoothing", type=float, default=0.9,
                   help="EMA weight for train curves, drawn over the faint raw curve as in "
                        "TensorBoard (0: raw only; must be < 1)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from megatron_rrtf.errors import ConfigError
    from megatron_rrtf.training.plots import plot_runs

    if not 0.0 <= args.smoothing < 1.0:
        raise ConfigError(f"--smoothing {args.smoothing}: choose a weight in [0, 1)")
    out = args.out or str(Path(args.runs[0]) / "plots")
    for path in plot_runs(args.runs, out, args.smoothing):
        print(path)
    return 0
