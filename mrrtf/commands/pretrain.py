"""`mrrtf pretrain CONFIG... [key=value ...]` (also under `torchrun --nproc-per-node N`)."""

from __future__ import annotations

import argparse
import json
import os

from mrrtf.commands.config_cmd import add_config_arguments

HELP = "pretrain a model with megatron-core (TP/PP/DP via torchrun), resumable"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from mrrtf.commands.config_cmd import load_config_arguments
    from pretrain.run import run_pretrain

    config = load_config_arguments(args)
    summary = run_pretrain(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    # 0: done or stopped at train.exit_interval (resume with the same command); 3: stopped by a
    # signal after saving, so a cluster scheduler can tell a pre-emption from a finished run.
    return 3 if summary["status"] == "interrupted" else 0
