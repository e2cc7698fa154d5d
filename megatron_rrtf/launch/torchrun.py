"""An `mrrtf` command as a multi-process job on this node: torchrun (`python -m
torch.distributed.run --standalone --nproc-per-node N -m mrrtf ...`), the same launch as a
multi-process pretraining run (docs/training.md, docs/cluster.md) with the rendezvous on a free
local port. `mrrtf rrtf run` trains each round this way when the round needs more than one
process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

RENDEZVOUS_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                   "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
"""Set by an enclosing torchrun; the job gets its own."""


def torchrun_command(nproc: int, mrrtf_args: list[str], python: str | None = None) -> list[str]:
    """The command line that runs `mrrtf MRRTF_ARGS...` in `nproc` processes on this node."""
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(nproc), "-m", "mrrtf", *mrrtf_args]


def run_torchrun(nproc: int, mrrtf_args: list[str], log_path: Path) -> int:
    """Run the job to its end with stdout and stderr in `log_path`; returns torchrun's exit code
    (torchrun reports any process's non-zero exit as its own 1: read the job's own result file
    for what happened)."""
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARS}
    command = torchrun_command(nproc, mrrtf_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting %d processes: %s (log: %s)", nproc, " ".join(command), log_path)
    with open(log_path, "a") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a job's log, for an error message."""
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
