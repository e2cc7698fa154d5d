"""Training checkpoints: atomic, resumable, reshardable.

Layout of RUN/checkpoints/:
    latest                 text: the name of the newest complete step directory
    step_00000100/
        model/             megatron dist_checkpointing (model_io.py)
        optimizer/         dist_checkpointing of optimizer.sharded_state_dict (reshardable)
        rng/rank{r}.pt     per-rank RNG states (restored only when the layout is unchanged)
        meta.json          step, consumed tokens, data-loader state, scheduler, layout
        config.yaml        the resolved config of the run that wrote it
A step is written under `.tmp_step_*` and renamed only when every rank has finished, and
`latest` is replaced atomically after that, so `kill -9` at any moment leaves the previous
checkpoint as `latest`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from types import MethodType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel

from megatron_rrtf.atomic_file import write_atomic
from megatron_rrtf.checkpoint.model_io import load_model, save_model, unwrap
from megatron_rrtf.config import RunConfig
from megatron_rrtf.errors import CheckpointError
from megatron_rrtf.training.setup import sub_optimizers

log = logging.getLogger(__name__)

STEP_PREFIX = "step_"
# The distributed optimizer's model-space format: every parameter's main weight and Adam moments
# saved with the parameter's own TP sharding (gathered over DP on save, sliced on load), so its
# checkpoints load at any DP, TP and PP layout. The other formats are DP-only or do not save.
OPTIMIZER_FORMAT = {"distrib_optim_sharding_type": "fully_reshardable"}
LATEST = "latest"


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


def resolve_step_dir(path: str | Path) -> Path:
    """A run dir, its checkpoints dir, or a step dir -> the step dir (via `latest`)."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / LATEST).is_file():
            name = (candidate / LATEST).read_text().strip()
            step = candidate / name
            if not (step / "meta.json").is_file() and not (step / "model").is_dir():
                raise CheckpointError(f"{candidate / LATEST} names {name}, which is incomplete")
            return step
    if (path / "model").is_dir():
        return path
    raise CheckpointError(f"no checkpoint at {path}: expected a step directory (with model/) or "
                          f"a run directory holding checkpoints/{LATEST}")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _layout() -> dict[str, int]:
    return dict(tp=parallel_state.get_tensor_model_parallel_world_size(),
                pp=parallel_state.get_pipeline_model_parallel_world_size(),
                dp=parallel_state.get_data_parallel_world_size(),
                world=dist.get_world_size() if dist.is_initialized() else 1)


def _rng_state() -> dict[str, Any]:
    return dict(python=random.getstate(), numpy=np.random.get_state(),
                torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
                tracker=tensor_parallel.get_cuda_rng_tracker().get_states())


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


class CheckpointManager:
    """Save and load full training state under RUN/checkpoints (collective calls)."""

    def __init__(self, run_dir: str | Path, keep_last: int = 3):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def latest(self) -> Path | None:
        """The step directory `latest` names, as rank 0 reads it (a collective call under
        torch.distributed): every rank resumes from the same step even where one node's view of
        the shared filesystem lags behind another's."""
        name = None
        if _rank() == 0:
            pointer = self.root / LATEST
            name = pointer.read_text().strip() if pointer.is_file() else None
        if dist.is_initialized():
            shared = [name]
            dist.broadcast_object_list(shared, src=0)
            name = shared[0]
        return None if name is None else self.root / name

    def clean_partial(self) -> None:
        """Remove `.tmp_step_*` left by a run killed while saving (rank 0)."""
        if _rank() == 0 and self.root.is_dir():
            for tmp in self.root.glob(f".tmp_{STEP_PREFIX}*"):
                log.warning("removing incomplete checkpoint %s (a save was interrupted)", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        _barrier()

    def save(self, step: int, state, meta: dict[str, Any], config: RunConfig) -> Path:
        _revive_checkpoint_writer()
        final = self.root / step_dir_name(step)
        tmp = self.root / f".tmp_{step_dir_name(step)}"
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        save_model(state.model, tmp)
        model_sd = self._model_sharded(state.model)
        (tmp / "optimizer").mkdir(exist_ok=True)
        dist_checkpointing.save(
            state.optimizer.sharded_state_dict(model_sd, metadata=OPTIMIZER_FORMAT),
            str(tmp / "optimizer"))
        (tmp / "rng").mkdir(exist_ok=True)
        torch.save(_rng_state(), tmp / "rng" / f"rank{_rank()}.pt")
        if _rank() == 0:
            full_meta = dict(meta, step=step, layout=_layout(),
                             distributed_optimizer=_is_distributed(state.optimizer),
                             scheduler=state.scheduler.state_dict())
            write_atomic(tmp / "meta.json", json.dumps(full_meta, indent=1, default=_jsonable))
            write_atomic(tmp / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        _barrier()
        if _rank() == 0:
            _fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_atomic(self.root / LATEST, final.name + "\n")
            self._prune()
        _barrier()
        log.info("saved checkpoint %s", final)
        return final

    def load(self, step_dir: str | Path, state, load_optimizer: bool = True) -> dict[str, Any]:
        step_dir = resolve_step_dir(step_dir)
        meta_path = step_dir / "meta.json"
        if not meta_path.is_file():
            raise CheckpointError(f"{step_dir} has no meta.json: not a training checkpoint")
        meta = json.loads(meta_path.read_text())
        load_model(state.model, step_dir)
        if load_optimizer:
            saved, wanted = meta.get("distributed_optimizer", False), \
                _is_distributed(state.optimizer)
            if saved != wanted:
                raise CheckpointError(
                    f"{step_dir} holds {'distributed' if saved else 'plain'}-optimizer state but "
                    f"this run has parallel.use_distributed_optimizer={str(wanted).lower()}: "
                    f"resume with parallel.use_distributed_optimizer={str(saved).lower()} (any "
                    "DP/TP/PP layout), or start from its weights only with "
                    "checkpoint.init_from")
            _prepare_distributed_optimizer_load(state.optimizer)
            model_sd = self._model_sharded(state.model)
            opt_sd = state.optimizer.sharded_state_dict(model_sd, is_loading=True,
                                                        metadata=OPTIMIZER_FORMAT)
            with torch.no_grad():
                state.optimizer.load_state_dict(
                    dist_checkpointing.load(opt_sd, str(step_dir / "optimizer")))
            _unshare_adam_steps(state.optimizer)
            state.scheduler.load_state_dict(meta["scheduler"])
        rng_file = step_dir / "rng" / f"rank{_rank()}.pt"
        if meta.get("layout") == _layout() and rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
        else:
            log.warning("parallel layout changed (%s -> %s): RNG streams re-seeded, the data "
                        "order is unchanged", meta.get("layout"), _layout())
        return meta

    @staticmethod
    def _model_sharded(model_chunks) -> dict:
        chunks = [unwrap(m) for m in model_chunks]
        if len(chunks) == 1:
            return {"model": chunks[0].sharded_state_dict()}
        return {f"model{i}": m.sharded_state_dict() for i, m in enumerate(chunks)}

    def _prune(self) -> None:
        steps = sorted(p for p in self.root.glob(f"{STEP_PREFIX}*") if p.is_dir())
        for old in steps[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def _revive_checkpoint_writer() -> None:
    """megatron's `torch_dist` writer collects its results through a queue served by a
    `multiprocessing` Manager process, started at the first save and reused. A signal sent to
    every process of a job (`scancel`, a pre-emption) kills that process too, and the save the
    signal asked for would then fail (BrokenPipeError): drop the dead queue so the save starts a
    new one."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    queue = filesystem_async._results_queue
    if queue is None:
        return
    try:
        queue.qsize()
    except (OSError, EOFError):     # BrokenPipeError, ConnectionRefusedError, ...
        log.warning("the checkpoint writer's helper process is gone (a signal to the whole "
                    "job?); starting a new one")
        filesystem_async._results_queue = None


def _is_distributed(optimizer) -> bool:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    return any(isinstance(opt, DistributedOptimizer) for opt in sub_optimizers(optimizer))


def _prepare_distributed_optimizer_load(optimizer) -> None:
    """Before loading: two of the three workarounds for megatron-core 0.16.1's distributed
    optimizer with torch's Adam (no apex/TE FusedAdam; the third, after the load, is
    `_unshare_adam_steps`), all checked by the resume-equals-uninterrupted tests:

    * a fresh optimizer has no Adam state and its `state_dict()` asserts on the missing
      per-parameter `step`: allocate the state with megatron's zero-gradient step (everything it
      touches is then overwritten from the checkpoint);
    * the model-space loader copies every state key, `step` included, from checkpoint entries
      that carry no `step` (KeyError): copy only the keys the checkpoint has; `step` itself is
      restored from the saved param groups by megatron's `load_state_dict`."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for opt in sub_optimizers(optimizer):
        if not isinstance(opt, DistributedOptimizer):
            continue
        if not opt.optimizer.state:
            opt._init_optimizer_states_with_dummy_values()
        if not opt.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            opt._set_main_param_and_optimizer_states = MethodType(_set_saved_states, opt)


def _unshare_adam_steps(optimizer) -> None:
    """megatron's distributed-optimizer load gives every parameter's Adam state the *same* `step`
    tensor; torch's Adam increments each parameter's step in place, so a shared one would advance
    once per parameter per update and skew the bias correction from the first resumed step."""
    for opt in sub_optimizers(optimizer):
        for param_state in getattr(opt.optimizer, "state", {}).values():
            if isinstance(param_state.get("step"), torch.Tensor):
                param_state["step"] = param_state["step"].clone()


def _set_saved_states(self, model_param, tensors) -> None:
    group_index, group_order = self.model_param_group_index_map[model_param]
    main_param = self.optimizer.param_groups[group_index]["params"][group_order]
    targets = {"param": main_param, **self.optimizer.state[main_param]}
    for key, value in tensors.items():
        targets[key].copy_(value)


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
