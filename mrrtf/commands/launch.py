"""`mrrtf launch --slurm [--nodes N --gpus-per-node G ...] CONFIG... [key=value ...]`: write a Slurm
batch script that runs `mrrtf pretrain` on N nodes and requeues itself after a pre-emption, then
print how to submit it. Nothing is submitted. The flags and their defaults are SlurmOptions'
fields (megatron_rrtf.launch.slurm); the config is checked against the job's world size first."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from mrrtf.commands.config_cmd import add_config_arguments
from mrrtf.commands.flags import add_flags, flag_values

HELP = "write a Slurm batch script for a multi-node `mrrtf pretrain` run (does not submit it)"

FIELDS = {
    "nodes": "nodes to allocate (one torchrun per node)",
    "gpus_per_node": "GPUs per node; 0 for CPU-only nodes",
    "procs_per_node": "training processes per node; none = one per GPU, 1 without GPUs",
    "cpus_per_node": "CPU cores per node; none = 8 per training process",
    "time": "time limit, HH:MM:SS or D-HH:MM:SS",
    "partition": "Slurm partition; none = the cluster's default",
    "account": "Slurm account; none = your default",
    "signal_before_s": "SIGTERM this many seconds before the time limit, to save and requeue",
}
FLAGS = {"signal_before_s": "--signal-before"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from megatron_rrtf.launch.slurm import SlurmOptions

    p.add_argument("--slurm", action="store_true", required=True,
                   help="write a Slurm batch script (the one scheduler supported)")
    add_flags(p, SlurmOptions, FIELDS, FLAGS)
    p.add_argument("--job-name", default=None,
                   help="Slurm job name (default: logging.run_name, else the run directory's name)")
    p.add_argument("--output", default=None,
                   help="directory for the script and the job's log, on a filesystem every node "
                        "sees (default: RUN_DIR/slurm)")
    add_config_arguments(p, note="as for mrrtf pretrain")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.launch.slurm import PretrainJob, SlurmOptions, render_sbatch
    from mrrtf.commands.config_cmd import load_config_arguments

    options = SlurmOptions(**flag_values(args, SlurmOptions, FIELDS, FLAGS))
    config = load_config_arguments(args).validate(world_size=options.world_size)
    run_dir = os.path.abspath(config.logging.run_dir)
    output = Path(os.path.abspath(args.output or os.path.join(run_dir, "slurm")))
    name = args.job_name or config.logging.run_name or Path(run_dir).name
    job = PretrainJob(config_args=tuple(args.configs), workdir=os.getcwd(), run_dir=run_dir,
                      python=os.path.abspath(sys.executable), output_dir=str(output),
                      job_name=name)
    output.mkdir(parents=True, exist_ok=True)  # Slurm opens the job's log here; it creates no dirs
    script = output / f"{name}.sbatch"
    script.write_text(render_sbatch(options, job))
    print(f"wrote {script} ({options.nodes} node(s) x {options.procs} process(es), "
          f"log in {output})")
    print(f"submit with: sbatch {shlex.quote(str(script))}")
    return 0
