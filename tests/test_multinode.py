"""Multi-node, proven on one machine: the real `mrrtf pretrain` under `torchrun --nnodes 2` as two
separate OS processes ("nodes" of one process each) meeting through a c10d rendezvous on
127.0.0.1. Each node has its own scratch directory (TMPDIR, where torchrun keeps its files); the
run directory and the data are shared, as on a cluster's shared filesystem. Data parallelism and
tensor parallelism each span the two nodes, and train as one process does."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_runs import (
    REPO,
    free_port,
    kill_tree,
    node_env,
    node_scratch_root,
    run_overrides,
    summary_of,
)
from pretrain_runs import OBJECTIVE_FILE, read_metrics

from megatron_rrtf.checkpoint.manager import resolve_step_dir
from megatron_rrtf.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multinode")]
NODES = 2
STEPS, EXIT_AT = 6, 3
LAUNCH_TIMEOUT_S = 180
PORT_ATTEMPTS = 3
TOL = 1e-5  # as the parallel-equivalence tests: DP/TP change only the order of summation


def node_command(node_rank: int, port: int, overrides: list[str]) -> list[str]:
    """What one node runs (docs/cluster.md): torchrun, one process here, then the CLI. is_host
    names the rendezvous host, so a port taken by another program fails fast on node 0 instead
    of node 0 joining that program as a client."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES),
            "--nproc-per-node", "1", "--node-rank", str(node_rank), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "multinode-test",
            "--rdzv-conf", f"is_host={'true' if node_rank == 0 else 'false'}",
            "-m", "mrrtf", "pretrain", "configs/tiny.yaml", OBJECTIVE_FILE, *overrides]


def launch(overrides: list[str], root: Path, scratch: Path, name: str) -> list[str]:
    """Start every node (logs in `root`, node i's scratch in scratch/node{i}), wait for all,
    return each node's output. A start whose rendezvous port was taken between picking and
    binding it (EADDRINUSE on node 0) is retried on another."""
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        logs = [root / f"{name}.try{attempt}.node{i}.log" for i in range(NODES)]
        procs = []
        for i, log in enumerate(logs):
            with open(log, "w") as out:  # a file, not a pipe: no node blocks on a full pipe
                procs.append(subprocess.Popen(
                    node_command(i, port, overrides), cwd=REPO, env=node_env(scratch / f"node{i}"),
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + LAUNCH_TIMEOUT_S
        try:
            while time.time() < deadline and any(p.poll() is None for p in procs):
                if any(p.poll() not in (None, 0) for p in procs):
                    break  # the other node would wait for it until a timeout
                time.sleep(0.2)
        finally:
            for p in procs:
                kill_tree(p)  # what a failed node leaves behind (nothing after a clean exit)
        outputs = [log.read_text() for log in logs]
        if procs[0].returncode != 0 and "EADDRINUSE" in outputs[0] \
                and attempt + 1 < PORT_ATTEMPTS:
            continue
        for i, (p, out) in enumerate(zip(procs, outputs)):
            assert p.returncode == 0, f"node {i} exited {p.returncode}:\n{out[-6000:]}"
        return outputs
    raise AssertionError("unreachable")


@pytest.fixture
def scratch() -> Iterator[Path]:
    with node_scratch_root() as root:
        yield root


@pytest.fixture(scope="module")
def reference_losses(tiny_data_config, tmp_path_factory) -> list[float]:
    """The same run, uninterrupted, in one process (this one)."""
    from pretrain.run import run_pretrain

    run_dir = tmp_path_factory.mktemp("reference")
    run_pretrain(load_config(["configs/tiny.yaml", OBJECTIVE_FILE],
                             run_overrides(tiny_data_config, run_dir, STEPS)))
    return [r["loss"] for r in read_metrics(run_dir)]


def _check_shared_and_scratch(run: Path, scratch: Path) -> None:
    """Only rank 0's files in the shared run directory; torchrun's own in each node's scratch."""
    assert sorted(p.name for p in run.iterdir()) == \
        ["checkpoints", "config.yaml", "metrics.jsonl", "summary.json"]
    for i in range(NODES):
        assert list((scratch / f"node{i}").glob("torchelastic_*")), f"node {i}'s scratch unused"


def test_data_parallel_across_two_nodes_stops_then_a_second_launch_resumes_it(
        tiny_data_config, reference_losses, tmp_path, scratch):
    run = tmp_path / "shared" / "run"
    overrides = run_overrides(tiny_data_config, run, STEPS, f"train.exit_interval={EXIT_AT}")

    summary = summary_of(launch(overrides, tmp_path, scratch, "first")[0])
    assert (summary["status"], summary["step"]) == ("exited", EXIT_AT)
    assert resolve_step_dir(run).name == f"step_{EXIT_AT:08d}"
    assert [r["step"] for r in read_metrics(run)] == list(range(1, EXIT_AT + 1))

    # the very same command on every node
    summary = summary_of(launch(overrides, tmp_path, scratch, "second")[0])
    assert (summary["status"], summary["step"], summary["steps_this_run"]) == \
        ("completed", STEPS, STEPS - EXIT_AT)
    assert resolve_step_dir(run).name == f"step_{STEPS:08d}"
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    tokens_per_step = 4 * tiny_data_config.model.seq_length
    assert [r["consumed_tokens"] for r in records] == [tokens_per_step * s
                                                       for s in range(1, STEPS + 1)]
    assert summary["consumed_tokens"] == tokens_per_step * STEPS
    for step, (got, want) in enumerate(zip([r["loss"] for r in records], reference_losses), 1):
        assert abs(got - want) < TOL, (step, got, want)
    _check_shared_and_scratch(run, scratch)


def test_tensor_parallel_across_two_nodes_trains_as_one_process(
        tiny_data_config, reference_losses, tmp_path, scratch):
    run = tmp_path / "shared" / "run"
    overrides = run_overrides(tiny_data_config, run, STEPS, "parallel.tensor_parallel=2")
    summary = summary_of(launch(overrides, tmp_path, scratch, "tp2")[0])
    assert (summary["status"], summary["step"]) == ("completed", STEPS)
    assert resolve_step_dir(run).name == f"step_{STEPS:08d}"
    losses = [r["loss"] for r in read_metrics(run)]
    assert len(losses) == STEPS
    for step, (got, want) in enumerate(zip(losses, reference_losses), 1):
        assert abs(got - want) < TOL, (step, got, want)
    _check_shared_and_scratch(run, scratch)
