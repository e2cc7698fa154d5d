"""Launching runs on a cluster scheduler: job scripts rendered from typed options (Slurm)."""
