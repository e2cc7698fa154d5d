"""A Slurm batch script for `mrrtf pretrain` on N nodes, rendered from typed options (pure: options
in, script text out; nothing here calls a Slurm command).

The script asks for one task per node; each task runs torchrun, which starts that node's
processes and meets the other nodes at a c10d rendezvous on the allocation's first node.
`signal_before_s` seconds before the time limit Slurm sends USR1, which each node's task turns
into a SIGTERM for its training processes alone; the run saves a checkpoint and stops, and the
script requeues the job, which resumes from that checkpoint (checkpoint.load=auto). See
docs/cluster.md.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from megatron_rrtf.errors import ConfigError

_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})$")
SLURM_MAX_SIGNAL_S = 65535  # --signal's sig_time field is 16 bits
DEFAULT_CPUS_PER_PROCESS = 8


def time_limit_seconds(limit: str) -> int:
    """`[D-]HH:MM:SS` -> seconds; ConfigError naming --time otherwise."""
    match = _TIME.match(limit)
    if not match:
        raise ConfigError(f"--time {limit!r}: write the limit as HH:MM:SS or D-HH:MM:SS, "
                          "e.g. --time 24:00:00")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    if minutes > 59 or seconds > 59:
        raise ConfigError(f"--time {limit!r}: minutes and seconds must be below 60")
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass(frozen=True)
class SlurmOptions:
    """What to ask Slurm for (the `mrrtf launch --slurm` flags)."""

    nodes: int = 1
    """Nodes to allocate; one srun task (one torchrun) per node."""
    gpus_per_node: int = 8
    """#SBATCH --gpus-per-node; 0 for CPU-only nodes (no GPU request)."""
    procs_per_node: int | None = None
    """Training processes per node (torchrun --nproc-per-node); None: one per GPU, 1 without."""
    cpus_per_node: int | None = None
    """#SBATCH --cpus-per-task (the node's one task); None: 8 per training process."""
    time: str = "24:00:00"
    """#SBATCH --time, HH:MM:SS or D-HH:MM:SS."""
    partition: str | None = None
    account: str | None = None
    signal_before_s: int = 300
    """Signal the run this many seconds before the time limit: enough to finish a step and save
    (Slurm may signal up to a minute earlier)."""

    def __post_init__(self) -> None:
        for flag, value in (("--nodes", self.nodes), ("--procs-per-node", self.procs_per_node),
                            ("--cpus-per-node", self.cpus_per_node)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} {value}: must be >= 1")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node {self.gpus_per_node}: must be >= 0 "
                              "(0: CPU-only nodes)")
        limit = time_limit_seconds(self.time)
        if not 0 < self.signal_before_s < min(limit, SLURM_MAX_SIGNAL_S + 1):
            raise ConfigError(
                f"--signal-before {self.signal_before_s}: must be between 1 and the time limit "
                f"(--time {self.time} = {limit} s) and at most {SLURM_MAX_SIGNAL_S}")

    @property
    def procs(self) -> int:
        """Training processes per node."""
        return self.procs_per_node or self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs


@dataclass(frozen=True)
class PretrainJob:
    """What the job runs, resolved on the submitting machine; every path is absolute and must be
    the same on every node (a shared filesystem)."""

    config_args: tuple[str, ...]
    """`mrrtf pretrain`'s CONFIG... and key=value overrides, as given."""
    workdir: str
    """Where the job starts, so relative paths in config_args resolve as they did here."""
    run_dir: str
    """logging.run_dir: rank 0's summary.json there says whether the run was interrupted."""
    python: str
    """An interpreter with mrrtf installed."""
    output_dir: str
    """Where Slurm writes the job's log (one file per job id, appended to across requeues)."""
    job_name: str


def render_sbatch(options: SlurmOptions, job: PretrainJob) -> str:
    """The batch script's text."""
    q = shlex.quote
    sbatch = [f"--job-name={job.job_name}", f"--nodes={options.nodes}", "--ntasks-per-node=1"]
    if options.gpus_per_node:
        sbatch.append(f"--gpus-per-node={options.gpus_per_node}")
    cpus = options.cpus_per_node or DEFAULT_CPUS_PER_PROCESS * options.procs
    sbatch += [f"--cpus-per-task={cpus}", f"--time={options.time}"]
    sbatch += [f"--partition={options.partition}"] * bool(options.partition)
    sbatch += [f"--account={options.account}"] * bool(options.account)
    sbatch += [f"--output={job.output_dir}/%x-%j.out", "--open-mode=append",
               f"--signal=USR1@{options.signal_before_s}", "--requeue"]
    header = "\n".join(f"#SBATCH {q(line)}" for line in sbatch)
    args = " ".join(q(a) for a in job.config_args)
    return f"""#!/bin/bash
# Written by `mrrtf launch --slurm`; submit it with sbatch.
# {options.nodes} node(s) x {options.procs} training process(es), one torchrun per node. Slurm
# signals {options.signal_before_s} s before the time limit: the run saves a checkpoint and stops,
# then this script requeues the job, which resumes from that checkpoint. See docs/cluster.md.
{header}

set -uo pipefail
cd {q(job.workdir)}
PYTHON={q(job.python)}
RUN_DIR={q(job.run_dir)}
export PYTHONUNBUFFERED=1

# The rendezvous: the allocation's first node (this script runs there), on a port derived from
# the job id unless MASTER_PORT is set.
if command -v scontrol >/dev/null 2>&1; then
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
else
    MASTER_ADDR=$(hostname)
fi
export MASTER_ADDR
export MASTER_PORT=${{MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}}
echo "job $SLURM_JOB_ID (restart ${{SLURM_RESTART_COUNT:-0}}): $SLURM_NNODES node(s)," \\
     "rendezvous $MASTER_ADDR:$MASTER_PORT"
STARTED={q(job.output_dir)}/.started-$SLURM_JOB_ID
touch "$STARTED"

# One task per node, running the quoted script there ($SLURM_NODEID is that node's index; the
# interpreter and the config arguments follow as "$0" and "$@"). Slurm's USR1 may reach every
# process of the step: torchrun, the training processes and their helpers (dist_checkpointing's
# writer, wandb's service) inherit it ignored. The task's shell passes it on as SIGTERM to the
# training processes alone (torchrun's children): they finish the step, save and exit. A SIGTERM
# to every process, or through torchrun (which signals each training process's whole process
# group), would kill those helpers, and with them the save.
srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '
    signalled=0
    trap "signalled=1; pkill -TERM -P \\$torchrun" USR1
    (trap "" USR1; exec "$0" -m torch.distributed.run \\
        --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" --nproc-per-node {options.procs} \\
        --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$SLURM_JOB_ID" \\
        --shutdown-timeout {options.signal_before_s} -m mrrtf pretrain "$@") &
    torchrun=$!
    wait $torchrun; status=$?
    while [ $signalled = 1 ]; do signalled=0; wait $torchrun; status=$?; done
    exit $status' \\
    "$PYTHON" {args}
status=$?

# torchrun turns a process's exit code into its own 1, so `mrrtf pretrain`'s 3 (interrupted after
# saving a checkpoint) does not reach here: rank 0's summary.json, written before any rank exits,
# says how the run stopped. Interrupted, or stopped at train.exit_interval: requeue to resume.
SUMMARY="$RUN_DIR/summary.json"
if [ "$SUMMARY" -nt "$STARTED" ] && "$PYTHON" -c '
import json, sys
sys.exit(json.load(open(sys.argv[1]))["status"] not in ("interrupted", "exited"))' "$SUMMARY"
then
    echo "the run stopped after saving a checkpoint: requeueing job $SLURM_JOB_ID to resume it"
    rm -f "$STARTED"
    scontrol requeue "$SLURM_JOB_ID"
fi
rm -f "$STARTED"
exit $status
"""
