"""`mrrtf pretrain CONFIG... [key=value ...]` (also under `torchrun --nproc-per-node N`)."""

from __future__ import annotations

import argparse
import json
import os

HELP = "pretrain a model with megatron-core (TP/PP/DP via torchrun), resumable"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configs", nargs="+",
                   help="YAML files merged in order (model, objectives, data), then key=value")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.config import load_config
    from mrrtf.commands.config_cmd import split_configs_and_overrides
    from pretrain.run import run_pretrain

    paths, overrides = split_configs_and_overrides(args.configs)
    config = load_config(paths, overrides)
    summary = run_pretrain(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    # 0: done or stopped at train.exit_interval (resume with the same command); 3: stopped by a
    # signal after saving, so a cluster scheduler can tell a pre-emption from a finished run.
    return 3 if summary["status"] == "interrupted" else 0
