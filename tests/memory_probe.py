"""What a training step really holds, per rank, measured from the tensors: weights, fp32 gradient
buffers, optimizer state, and the peak of the activations autograd keeps for backward (every
saved tensor's storage counted once while it is alive). The planner's prediction
(megatron_rrtf.planning.memory) is checked against this (tests, benchmarks/bench_plan_memory.py).
Peak RSS is not used: the CPU allocator keeps freed pages."""

from __future__ import annotations

import torch
import torch.distributed as dist

from megatron_rrtf.checkpoint.model_io import unwrap
from megatron_rrtf.config import load_config
from megatron_rrtf.parallel.init import process_groups
from megatron_rrtf.training.loop import LoopSpec, Trainer
from megatron_rrtf.training.setup import build_model_state, sub_optimizers
from pretrain.forward import STAT_NAMES, make_forward_step


class SavedActivations:
    """saved_tensors_hooks that track the bytes of live saved storages and their peak."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.refs, self.size = exclude, {}, {}
        self.current = self.peak = 0

    def _pack(self, tensor):
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in self.exclude or ptr == 0:
            return tensor
        if ptr not in self.refs:
            self.refs[ptr], self.size[ptr] = 0, tensor.untyped_storage().nbytes()
            self.current += self.size[ptr]
            self.peak = max(self.peak, self.current)
        self.refs[ptr] += 1
        return _Held(tensor, ptr, self)

    def _release(self, ptr: int) -> None:
        self.refs[ptr] -= 1
        if self.refs[ptr] == 0:
            self.current -= self.size.pop(ptr)
            del self.refs[ptr]

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(
            self._pack, lambda held: held.tensor if isinstance(held, _Held) else held)


class _Held:
    __slots__ = ("tensor", "ptr", "owner")

    def __init__(self, tensor, ptr, owner):
        self.tensor, self.ptr, self.owner = tensor, ptr, owner

    def __del__(self):
        self.owner._release(self.ptr)


def _optimizer_bytes(optimizer, model_storages: set[int]) -> int:
    total = 0
    for opt in sub_optimizers(optimizer):
        for param_state in opt.optimizer.state.values():
            total += sum(v.untyped_storage().nbytes() for k, v in param_state.items()
                         if isinstance(v, torch.Tensor) and k != "step")
        for group in opt.optimizer.param_groups:     # fp32 main weights that are not the model's
            for p in group["params"]:
                if p.untyped_storage().data_ptr() not in model_storages:
                    total += p.numel() * p.element_size()
    return total


def measure_step(run_dir: str, config_files: list[str], overrides: list[str], seq: int,
                 vocab: int) -> dict:
    """One training step of `config_files` + `overrides` on synthetic data; what this rank holds
    (bytes) and the planner's inputs (padded vocab, micro-batches)."""
    import engine_workers

    cfg = load_config(config_files, [f"model.seq_length={seq}", f"logging.run_dir={run_dir}",
                                     "logging.wandb_mode=disabled", "logging.progress_bar=false",
                                     *overrides])
    with process_groups(cfg.parallel, cfg.train.seed):
        world = dist.get_world_size()
        cfg.validate(world_size=world)
        padded = cfg.model.padded_vocab_size(vocab)
        state = build_model_state(cfg, padded)
        source = engine_workers.SyntheticBatches(cfg.train.global_batch_size,
                                                 cfg.train.micro_batch_size, seq=seq, vocab=vocab,
                                                 documents=1)   # causal: no CPU mask
        spec = LoopSpec(source=source, forward_step=make_forward_step(False),
                        stat_names=STAT_NAMES, tokens_per_sample=seq)
        trainer = Trainer(cfg, state, spec)
        params = [p for chunk in state.model for p in unwrap(chunk).parameters()]
        grad_buffers = [b.grad_data for chunk in state.model for b in chunk.buffers]
        model_storages = {p.untyped_storage().data_ptr() for p in params}
        exclude = model_storages | {g.untyped_storage().data_ptr() for g in grad_buffers}
        probe = SavedActivations(exclude)
        with probe.hooks():
            trainer.train_step()
        return dict(parameters=sum(p.numel() for p in params),
                    weights=sum(p.numel() * p.element_size() for p in params),
                    gradients=sum(g.numel() * g.element_size() for g in grad_buffers),
                    optimizer=_optimizer_bytes(state.optimizer, model_storages),
                    activations=probe.peak, padded_vocab=padded,
                    microbatches=trainer.num_micro, config=cfg.to_dict())
