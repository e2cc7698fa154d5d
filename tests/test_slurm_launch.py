"""`mrrtf launch --slurm`: the batch script's text, its shell logic run against a made-up Slurm
(fast: a stand-in interpreter records what each node would run), and the real script on one
machine (slow): a fake `srun` runs the per-node command once per "node", each with its own
scratch directory, and a fake `scontrol` records requeues; the run trains on two nodes, saves
and is requeued on the signal Slurm sends before the time limit, and the requeued job resumes it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from cluster_runs import REPO, free_port, kill_tree, node_env, node_scratch_root, run_overrides
from pretrain_runs import OBJECTIVE_FILE, read_metrics

from megatron_rrtf.checkpoint.manager import resolve_step_dir
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.launch.slurm import PretrainJob, SlurmOptions, render_sbatch
from mrrtf.cli import main

JOB_ID = "4242"

FAKE_SRUN = '''#!{python}
"""srun in a made-up allocation: the command once per node (SLURM_NODEID 0..N-1), each task in a
session of its own with its own TMPDIR (node-local scratch); exits with the highest status."""
import os, subprocess, sys

root, scratch_root = os.environ["FAKE_SLURM_DIR"], os.environ["FAKE_NODE_SCRATCH"]
command = sys.argv[1:]
while command[0].startswith("--"):
    command.pop(0)
tasks = []
for node in range(int(os.environ["SLURM_NNODES"])):
    scratch = os.path.join(scratch_root, f"node{{node}}")
    os.makedirs(scratch, exist_ok=True)
    env = dict(os.environ, SLURM_NODEID=str(node), SLURM_PROCID=str(node), SLURM_LOCALID="0",
               TMPDIR=scratch)
    tasks.append(subprocess.Popen(command, env=env, start_new_session=True))
with open(os.path.join(root, "tasks"), "w") as f:
    f.write(" ".join(str(t.pid) for t in tasks))
sys.exit(max(abs(t.wait()) for t in tasks))
'''

FAKE_SCONTROL = '''#!/bin/bash
# scontrol in a made-up allocation: every node is this machine; requeues are recorded.
case "$1" in
    show) printf '127.0.0.1\\n127.0.0.1\\n' ;;
    requeue) echo "requeue $2" >> "$FAKE_SLURM_DIR/requeued" ;;
    *) exit 1 ;;
esac
'''

# Stands in for the interpreter: `-c` code runs in the real one; a run records its arguments per
# node and, on node 0, leaves the summary FAKE_STATUS names (none if empty), exiting FAKE_EXIT.
FAKE_PYTHON = '''#!/bin/bash
if [ "$1" = "-c" ]; then exec {python} "$@"; fi
printf '%s\\0' "$@" > "$FAKE_SLURM_DIR/argv.node$SLURM_NODEID"
if [ "$SLURM_NODEID" = 0 ] && [ -n "${{FAKE_STATUS:-}}" ]; then
    printf '{{"status": "%s"}}' "$FAKE_STATUS" > "$FAKE_RUN_DIR/summary.json"
fi
exit "${{FAKE_EXIT:-0}}"
'''


# Stand in for torchrun and the training process it starts. The training process starts a helper
# (as dist_checkpointing's writer) and on SIGTERM records whether the helper is still alive, then
# exits 3; torchrun records its process's exit code and any SIGTERM of its own, then exits 1.
FAKE_TORCHRUN = '''#!/bin/bash
trap 'echo torchrun-terminated >> "$FAKE_SLURM_DIR/node$SLURM_NODEID"' TERM
{worker} &
wait $!; status=$?
echo "training process exited $status" >> "$FAKE_SLURM_DIR/node$SLURM_NODEID"
exit 1
'''
FAKE_TRAINING_PROCESS = '''#!/bin/bash
sleep 120 &
helper=$!
trap 'kill -0 $helper && echo helper-alive >> "$FAKE_SLURM_DIR/node$SLURM_NODEID"
      kill $helper; exit 3' TERM
echo > "$FAKE_SLURM_DIR/started.node$SLURM_NODEID"
wait $helper
'''


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_slurm(tmp_path) -> Iterator[dict[str, str]]:
    """The environment of a 2-node job 4242 whose srun and scontrol are the fakes above."""
    root, bin_dir = tmp_path / "slurm_state", tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    _executable(bin_dir / "srun", FAKE_SRUN.format(python=sys.executable))
    _executable(bin_dir / "scontrol", FAKE_SCONTROL)
    with node_scratch_root() as scratch:
        yield node_env(scratch / "batch", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                       FAKE_SLURM_DIR=str(root), FAKE_NODE_SCRATCH=str(scratch),
                       SLURM_JOB_ID=JOB_ID, SLURM_NNODES="2", SLURM_JOB_NODELIST="node[1-2]")


def _job(tmp_path: Path, python: str, *config_args: str) -> PretrainJob:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return PretrainJob(config_args=config_args or ("configs/1b.yaml",), workdir=str(REPO),
                       run_dir=str(tmp_path / "run"), python=python,
                       output_dir=str(tmp_path / "logs"), job_name="codegen2_1b")


def _sbatch_lines(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines()
            if line.startswith("#SBATCH ")]


def test_script_asks_for_one_task_per_node_a_signal_before_the_limit_and_requeue(tmp_path):
    options = SlurmOptions(nodes=2, gpus_per_node=8, time="04:00:00", partition="gpu",
                           account="proj", signal_before_s=120)
    script = render_sbatch(options, _job(tmp_path, "/venv/bin/python"))
    assert _sbatch_lines(script) == [
        "--job-name=codegen2_1b", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8",
        "--cpus-per-task=64", "--time=04:00:00", "--partition=gpu", "--account=proj",
        f"--output={tmp_path}/logs/%x-%j.out", "--open-mode=append", "--signal=USR1@120",
        "--requeue"]
    assert "--nproc-per-node 8" in script and "--shutdown-timeout 120" in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_cpu_only_nodes_ask_for_no_gpus_and_run_one_process_each(tmp_path):
    options = SlurmOptions(nodes=2, gpus_per_node=0)
    script = render_sbatch(options, _job(tmp_path, "/venv/bin/python"))
    assert not [line for line in _sbatch_lines(script) if line.startswith("--gpus")]
    assert "--cpus-per-task=8" in _sbatch_lines(script)
    assert "--nproc-per-node 1" in script and options.world_size == 2


@pytest.mark.parametrize("kwargs, flag", [
    (dict(time="24h"), "--time '24h'"), (dict(time="1:75:00"), "--time"),
    (dict(nodes=0), "--nodes 0"), (dict(gpus_per_node=-1), "--gpus-per-node"),
    (dict(time="00:05:00", signal_before_s=300), "--signal-before 300"),
])
def test_bad_options_are_refused_naming_the_flag(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        SlurmOptions(**kwargs)


def _run_script(script: str, env: dict[str, str], timeout: float = 60
                ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_each_node_runs_torchrun_with_its_node_rank_and_the_arguments_verbatim(
        tmp_path, fake_slurm):
    python = _executable(tmp_path / "python", FAKE_PYTHON.format(python=sys.executable))
    args = ("configs/1b.yaml", "objectives.rates={causal: 0.5, span: 0.5}",
            "logging.run_name=it's $HOME", 'data.note="a b"')
    options = SlurmOptions(nodes=2, gpus_per_node=0, signal_before_s=60)
    done = _run_script(render_sbatch(options, _job(tmp_path, str(python), *args)), fake_slurm)
    assert done.returncode == 0, done.stdout + done.stderr
    port = 20000 + int(JOB_ID) % 20000  # MASTER_PORT unset: derived from the job id
    for node in range(2):
        argv = (Path(fake_slurm["FAKE_SLURM_DIR"]) / f"argv.node{node}").read_text()
        assert argv.split("\0")[:-1] == [
            "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
            "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", JOB_ID,
            "--shutdown-timeout", "60", "-m", "mrrtf", "pretrain", *args]


@pytest.mark.parametrize("status, exit_code, requeued", [
    ("interrupted", 1, True), ("exited", 0, True), ("completed", 0, False), ("", 1, False),
    ("stale", 1, False)])
def test_the_job_requeues_itself_only_when_its_run_stopped_after_saving(
        tmp_path, fake_slurm, status, exit_code, requeued):
    python = _executable(tmp_path / "python", FAKE_PYTHON.format(python=sys.executable))
    job = _job(tmp_path, str(python))
    Path(job.run_dir).mkdir()
    if status == "stale":  # a previous job's summary; this job's run crashed before writing one
        summary = Path(job.run_dir, "summary.json")
        summary.write_text('{"status": "interrupted"}')
        os.utime(summary, (time.time() - 3600,) * 2)
        status = ""
    env = dict(fake_slurm, FAKE_STATUS=status, FAKE_EXIT=str(exit_code),
               FAKE_RUN_DIR=job.run_dir, MASTER_PORT="29999")
    done = _run_script(render_sbatch(SlurmOptions(nodes=2, gpus_per_node=0), job), env)
    assert done.returncode == exit_code, done.stdout + done.stderr
    record = Path(fake_slurm["FAKE_SLURM_DIR"], "requeued")
    assert (record.read_text() if record.exists() else "") == \
        (f"requeue {JOB_ID}\n" if requeued else "")
    assert not list(Path(job.output_dir).glob(".started-*"))


def test_launch_writes_the_script_and_prints_the_sbatch_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = main(["launch", "--slurm", "--nodes", "2", "--gpus-per-node", "8", "--output",
                 str(tmp_path), "configs/1b.yaml", "train.lr=2e-4"])
    out = capsys.readouterr().out
    script = tmp_path / "codegen2_1b.sbatch"
    assert code == 0 and f"sbatch {script}" in out
    text = script.read_text()
    assert "--nodes=2" in _sbatch_lines(text) and "configs/1b.yaml train.lr=2e-4" in text
    assert f"RUN_DIR={shlex.quote(str(REPO / 'runs' / 'codegen2_1b'))}" in text
    assert f"cd {shlex.quote(str(REPO))}" in text


def test_launch_checks_the_config_against_the_jobs_world_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = main(["launch", "--slurm", "--nodes", "3", "--gpus-per-node", "0", "--output",
                 str(tmp_path), "configs/tiny.yaml"])
    assert code == 2
    assert "train.global_batch_size=8 is not divisible" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the job ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _signal_job_step(fake_slurm: dict[str, str], signum: int) -> None:
    """What `#SBATCH --signal=USR1@N` does: the signal to every process of the job step on every
    node (the task's shell, torchrun, the training processes and their helpers)."""
    for pid in Path(fake_slurm["FAKE_SLURM_DIR"], "tasks").read_text().split():
        try:
            task = psutil.Process(int(pid))
            processes = [task, *task.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in processes:
            try:
                proc.send_signal(signum)
            except psutil.NoSuchProcess:
                pass




def _start(script: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """The batch script as Slurm's batch step runs it, its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(["bash", script], env=env, cwd=log.parent, stdout=out,
                                stderr=subprocess.STDOUT)


def test_the_signal_reaches_the_training_processes_alone_as_sigterm(tmp_path, fake_slurm):
    worker = _executable(tmp_path / "worker", FAKE_TRAINING_PROCESS)
    torchrun = _executable(tmp_path / "python", FAKE_TORCHRUN.format(worker=worker))
    script = render_sbatch(SlurmOptions(nodes=2, gpus_per_node=0), _job(tmp_path, str(torchrun)))
    state = Path(fake_slurm["FAKE_SLURM_DIR"])
    (tmp_path / "job.sbatch").write_text(script)
    job = _start(str(tmp_path / "job.sbatch"), fake_slurm, tmp_path / "job.log")
    try:
        _wait(lambda: all((state / f"started.node{i}").exists() for i in range(2)), 30,
              "both nodes", job)
        _signal_job_step(fake_slurm, signal.SIGUSR1)
        job.wait(timeout=30)
    finally:
        kill_tree(job)  # nothing left after a clean exit
    out = (tmp_path / "job.log").read_text()
    assert job.returncode == 1, out  # torchrun's status, passed through by the task and srun
    for i in range(2):  # the helper outlived the USR1; torchrun itself was not signalled
        assert (state / f"node{i}").read_text() == \
            "helper-alive\ntraining process exited 3\n", out
    assert not (state / "requeued").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("multinode")
def test_generated_script_trains_on_two_nodes_and_is_requeued_after_the_signal_to_resume(
        tiny_data_config, tmp_path, fake_slurm, monkeypatch):
    monkeypatch.chdir(REPO)
    steps, run = 12, tmp_path / "shared" / "run"
    assert main(["launch", "--slurm", "--nodes", "2", "--gpus-per-node", "0", "--time",
                 "00:10:00", "--signal-before", "60", "--output", str(tmp_path / "logs"),
                 "configs/tiny.yaml", OBJECTIVE_FILE,
                 *run_overrides(tiny_data_config, run, steps, "checkpoint.save_interval=1")]) == 0
    script = str(tmp_path / "logs" / "run.sbatch")
    env = dict(fake_slurm, MASTER_PORT=str(free_port()))
    requeued = Path(fake_slurm["FAKE_SLURM_DIR"], "requeued")

    job = _start(script, env, tmp_path / "job1.log")
    try:
        # a checkpoint first, so that dist_checkpointing's helper process is there to be spared
        _wait((run / "checkpoints" / "latest").is_file, 180, "a checkpoint", job)
        _signal_job_step(fake_slurm, signal.SIGUSR1)
        job.wait(timeout=180)
    finally:
        kill_tree(job)
    log_text = (tmp_path / "job1.log").read_text()
    assert job.returncode == 1, log_text[-6000:]  # torchrun's 1 for the processes' 3
    assert requeued.read_text() == f"requeue {JOB_ID}\n", log_text[-6000:]
    stopped_at = read_metrics(run)[-1]["step"]
    assert 1 <= stopped_at < steps
    assert resolve_step_dir(run).name == f"step_{stopped_at:08d}"

    # The requeued job: the same script again, which resumes from that checkpoint.
    env["SLURM_RESTART_COUNT"] = "1"
    job = _start(script, env, tmp_path / "job2.log")
    try:
        job.wait(timeout=240)
    finally:
        kill_tree(job)
    log_text = (tmp_path / "job2.log").read_text()
    assert job.returncode == 0, log_text[-6000:]
    assert requeued.read_text() == f"requeue {JOB_ID}\n"  # finished: not requeued again
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert records[-1]["consumed_tokens"] == steps * 4 * tiny_data_config.model.seq_length
    assert resolve_step_dir(run).name == f"step_{steps:08d}"
    assert f"resumed from {run}/checkpoints/step_{stopped_at:08d}" in log_text
