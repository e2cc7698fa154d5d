"""Where step metrics go: RUN/metrics.jsonl, wandb (offline unless asked), and a tqdm bar."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from megatron_rrtf.config import RunConfig

log = logging.getLogger(__name__)


class MetricsLogger:
    """Rank 0 writes; other ranks get a logger whose methods do nothing."""

    def __init__(self, config: RunConfig, total_steps: int, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = Path(config.logging.run_dir) / "metrics.jsonl"
        self._bar = None
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(start_step)
        if config.logging.progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                             dynamic_ncols=True)
        if config.logging.wandb_mode != "disabled":
            self._wandb = _start_wandb(config)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop records past the checkpoint so the file reads as one clean run."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._call_wandb("log", {k: v for k, v in record.items() if v is not None},
                             step=record["step"])
        if self._bar is not None and record.get("kind") == "train":
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                  refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._call_wandb("finish")

    def _call_wandb(self, method: str, *args, **kwargs) -> None:
        """wandb runs in a service process of its own. A signal sent to every process of a job
        (`scancel`, a pre-emption) can kill it while training goes on to save its checkpoint: a
        failed wandb call then stops wandb for the rest of the run, with a warning, instead of
        the run. metrics.jsonl (written first) stays complete."""
        try:
            getattr(self._wandb, method)(*args, **kwargs)
        except Exception as exc:  # any failure of the side channel
            log.warning("wandb stopped working (%s: %s); metrics continue in %s only",
                        type(exc).__name__, exc, self.path)
            self._wandb = None


def _start_wandb(config: RunConfig):
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        log.warning("wandb is not installed; metrics go to metrics.jsonl only")
        return None
    mode = config.logging.wandb_mode
    os.environ.setdefault("WANDB_SILENT", "true")
    run_dir = Path(config.logging.run_dir)
    return wandb.init(project=config.logging.wandb_project,
                      name=config.logging.run_name or run_dir.name, dir=str(run_dir),
                      mode=mode, config=config.to_dict(), resume="allow",
                      id=_wandb_id(run_dir))


def _wandb_id(run_dir: Path) -> str:
    """One wandb run id per run directory, so a resumed run continues the same wandb run."""
    path = run_dir / "wandb_id.txt"
    if path.is_file():
        return path.read_text().strip()
    import uuid

    run_id = uuid.uuid4().hex[:12]
    path.write_text(run_id)
    return run_id
