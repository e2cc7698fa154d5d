"""Helpers for the cluster tests (several "nodes" on one machine): the tiny run as CLI overrides,
a rendezvous port, process clean-up, the summary rank 0 prints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from pretrain_runs import sources_json

from megatron_rrtf.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def run_overrides(data_config: RunConfig, run_dir: Path, steps: int, *extra: str) -> list[str]:
    """The tiny model (hidden 64) on the tiny data fixture (seq 32) for `steps` steps, wandb off,
    as `key=value` overrides for `mrrtf pretrain configs/tiny.yaml OBJECTIVE_FILE`."""
    d = data_config.data
    return [f"data.tokenizer={d.tokenizer}", f"data.output_dir={d.output_dir}",
            f"data.sources={sources_json(data_config)}",
            f"data.heldout_fraction={d.heldout_fraction}",
            f"model.seq_length={data_config.model.seq_length}", "model.hidden_size=64",
            "train.micro_batch_size=2", "train.global_batch_size=4", "train.warmup_steps=2",
            f"train.train_steps={steps}", "logging.wandb_mode=disabled",
            "logging.progress_bar=false", f"logging.run_dir={run_dir}", *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def node_scratch_root() -> Iterator[Path]:
    """A short directory to hold each node's scratch (TMPDIR), removed after. Short, because
    dist_checkpointing's writer opens a Unix socket under TMPDIR, and a socket path is limited to
    107 bytes: under pytest's deep tmp_path (with xdist deeper still) the save fails."""
    with tempfile.TemporaryDirectory(prefix="mrrtf-") as root:
        yield Path(root)


def node_env(scratch: Path, **extra: str) -> dict[str, str]:
    """The environment of one "node": the repo importable, one thread, its own scratch dir."""
    scratch.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TMPDIR=str(scratch),
                **extra)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and every process below it, then reap it. By parent, not by process
    group: torchrun starts each training process in a session of its own."""
    try:
        root = psutil.Process(proc.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def summary_of(output: str) -> dict:
    """The run summary rank 0 prints (the last line that is one)."""
    lines = [line for line in output.splitlines() if line.startswith('{"status"')]
    assert lines, output[-4000:]
    return json.loads(lines[-1])
