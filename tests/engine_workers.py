"""Bodies of the training-engine tests at scale (imported by spawned processes): a synthetic,
layout-independent batch source and a run that trains, saves and reports per-step records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.dist_checkpointing.mapping import ShardedTensor

from megatron_rrtf.checkpoint.model_io import load_model, save_model, unwrap
from megatron_rrtf.config import load_config
from megatron_rrtf.model.documents import DocumentAttention
from megatron_rrtf.parallel.init import process_groups
from megatron_rrtf.training.loop import LoopSpec, Trainer
from megatron_rrtf.training.setup import build_model_state
from pretrain.forward import STAT_NAMES, make_forward_step

SEQ, VOCAB = 32, 128


class SyntheticBatches:
    """Step k's global batch is drawn from seed k (two documents per row, uneven loss masks);
    each data-parallel rank takes its contiguous slice, so every layout trains on the same
    samples per step and a resumed run continues the same sequence."""

    def __init__(self, global_batch: int, micro: int, seed: int = 0, seq: int = SEQ,
                 vocab: int = VOCAB, documents: int = 2):
        self.global_batch, self.micro, self.seed, self.step = global_batch, micro, seed, 0
        self.seq, self.vocab, self.documents = seq, vocab, documents

    def next_microbatches(self, count: int) -> list[dict]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.step)
        self.step += 1
        seq = self.seq
        tokens = torch.randint(0, self.vocab, (self.global_batch, seq + 1), generator=g)
        mask = (torch.rand(self.global_batch, seq, generator=g) > 0.2).float()
        dp, rank = (parallel_state.get_data_parallel_world_size(),
                    parallel_state.get_data_parallel_rank())
        rows = self.global_batch // dp
        assert rows == count * self.micro, (rows, count, self.micro)
        doc_ids = np.zeros((self.micro, seq), dtype=np.int32)
        if self.documents == 2:
            doc_ids[:, seq // 3:] = 1
        layout = DocumentAttention.build(doc_ids, np.zeros((self.micro, seq), dtype=bool))
        out = []
        for i in range(count):
            sl = slice(rank * rows + i * self.micro, rank * rows + (i + 1) * self.micro)
            out.append(dict(tokens=tokens[sl, :-1], labels=tokens[sl, 1:], loss_mask=mask[sl],
                            attention=layout,
                            objective_id=torch.zeros(self.micro, dtype=torch.long)))
        return out

    def counters(self, batches):
        return {}

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


def engine_config(run_dir: Path, *overrides: str):
    return load_config("configs/tiny.yaml", [
        "model.num_layers=4", "model.hidden_size=64", f"model.seq_length={SEQ}",
        "train.micro_batch_size=2", "train.global_batch_size=8", "train.warmup_steps=2",
        "train.lr=1e-2", "train.adam_eps=1e-4", "train.train_steps=10",
        "logging.wandb_mode=disabled", "logging.progress_bar=false",
        f"logging.run_dir={run_dir}", *overrides])


def train(run_dir: str, overrides: list[str], steps: int, save_at: tuple[int, ...] = (),
          init: str | None = None) -> dict:
    """Train (resuming from run_dir's latest checkpoint if any, else from the weights in step
    directory `init` if given) up to `steps`; return the per-step records and this rank's
    parameters by name."""
    cfg = engine_config(Path(run_dir), *overrides)
    with process_groups(cfg.parallel, cfg.train.seed):
        cfg.validate(world_size=dist.get_world_size())
        state = build_model_state(cfg, VOCAB)
        source = SyntheticBatches(cfg.train.global_batch_size, cfg.train.micro_batch_size)
        spec = LoopSpec(source=source, forward_step=make_forward_step(False),
                        stat_names=STAT_NAMES, tokens_per_sample=SEQ)
        trainer = Trainer(cfg, state, spec)
        trainer.maybe_resume()
        if init is not None and trainer.step == 0:
            load_model(state.model, init)
        records = []
        while trainer.step < steps:
            records.append(trainer.train_step())
            if trainer.step in save_at:
                trainer.save()
        params = {}
        for chunk in state.model:
            for name, p in unwrap(chunk).named_parameters():
                params[name] = p.detach().float().clone()
        return dict(records=records, params=params,
                    tp_rank=parallel_state.get_tensor_model_parallel_rank(),
                    pp_rank=parallel_state.get_pipeline_model_parallel_rank())


def _global_ids(chunk: torch.nn.Module) -> dict[str, tuple]:
    """Local parameter name -> (checkpoint key, global offset): the same for a layer whichever
    pipeline stage or virtual chunk holds it (TP=1 layouts)."""
    out = {}
    for name, sh in unwrap(chunk).sharded_state_dict().items():
        if isinstance(sh, ShardedTensor):
            out[name] = (sh.key, tuple(sh.global_offset))
    return out


def first_step_gradients(run_dir: str, overrides: list[str], weights: str | None,
                         reference: str | None = None) -> dict:
    """One global batch forward and backward through the training stack (megatron DDP, the
    schedule, finalize_model_grads); returns the loss and the reduced fp32 gradients.

    weights: a step directory to load the model from (resharded to this layout); None saves
    this model's initial weights to run_dir/init for other layouts to load.
    reference: a file with a TP=1 run's {"by_name": gradients}: also return, per parameter, the
    largest difference of this rank's gradient shard from the matching slice of it."""
    cfg = engine_config(Path(run_dir), *overrides)
    with process_groups(cfg.parallel, cfg.train.seed):
        cfg.validate(world_size=dist.get_world_size())
        state = build_model_state(cfg, VOCAB)
        if weights is None:
            save_model(state.model, Path(run_dir) / "init")
        else:
            load_model(state.model, weights)
        source = SyntheticBatches(cfg.train.global_batch_size, cfg.train.micro_batch_size)
        spec = LoopSpec(source=source, forward_step=make_forward_step(False),
                        stat_names=STAT_NAMES, tokens_per_sample=SEQ)
        trainer = Trainer(cfg, state, spec)
        for chunk in state.model:
            chunk.zero_grad_buffer()
        reports = trainer._forward_backward(source.next_microbatches(trainer.num_micro), False)
        loss = trainer._reduce_stats(reports)["loss"]
        by_name, by_id = {}, {}
        for chunk in state.model:
            ids = _global_ids(chunk)
            for name, p in unwrap(chunk).named_parameters():
                grad = p.main_grad.detach().clone()
                by_name[name] = grad
                by_id[ids.get(name, name)] = grad   # (a GLU fc1 is a factory, not a tensor)
        params = [(n, p) for chunk in state.model for n, p in unwrap(chunk).named_parameters()]
        sequence_parallel = sorted(n for n, p in params if getattr(p, "sequence_parallel", False))
        diffs = {}
        if reference is not None:
            from parallel_workers import _tp_shard

            full = torch.load(reference)["by_name"]
            glu = cfg.model.family == "rope"
            diffs = {n: (by_name[n] - _tp_shard(n, full[n], p, glu)).abs().max().item()
                     for n, p in params}
        return dict(loss=loss, by_name=by_name, by_id=by_id, sequence_parallel=sequence_parallel,
                    diffs=diffs)


def recompute_run(run_dir: str, overrides: list[str], weights: str | None) -> dict:
    """One forward and backward of the 4-layer model (two documents, a prefix-LM prefix) in
    this process; the loss, every gradient, and how often attention and layers ran."""
    from megatron_rrtf.model.build import build_gpt_model

    cfg = engine_config(Path(run_dir), *overrides)
    with process_groups(cfg.parallel, cfg.train.seed):
        model = build_gpt_model(cfg, VOCAB).train()
        if weights is None:
            save_model(model, Path(run_dir) / "init")
        else:
            load_model(model, weights)
        calls = {"attention": 0, "layer": 0}

        def count(kind):
            def hook(module, args):
                calls[kind] += 1
            return hook

        # pre-hooks: torch's checkpoint stops a recomputation early, before post-hooks run
        for layer in model.decoder.layers:
            layer.register_forward_pre_hook(count("layer"))
            layer.self_attention.core_attention.register_forward_pre_hook(count("attention"))
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, VOCAB, (2, SEQ + 1), generator=g)
        doc_ids = np.zeros((2, SEQ), dtype=np.int32)
        doc_ids[:, SEQ // 2:] = 1
        prefix = np.zeros((2, SEQ), dtype=bool)
        prefix[:, :5] = True
        layout = DocumentAttention.build(doc_ids, prefix)
        loss = model(tokens[:, :-1], layout.position_ids, layout.model_mask(),
                     labels=tokens[:, 1:]).float().mean()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        return dict(loss=loss.item(), grads=grads, calls=calls)


def fp16_overflow_run(run_dir: str, overflow_at: int) -> dict:
    """fp16 training in this process with an infinite loss injected at step `overflow_at`;
    the records and the (fp16) model parameters after every step."""
    cfg = engine_config(Path(run_dir), "train.precision=fp16", "train.initial_loss_scale=1024",
                        "train.hysteresis=1", "train.lr=3e-3")
    with process_groups(cfg.parallel, cfg.train.seed):
        state = build_model_state(cfg, VOCAB)
        source = SyntheticBatches(cfg.train.global_batch_size, cfg.train.micro_batch_size)
        real = make_forward_step(False)
        trainer = None

        def forward(batch, model):
            output, loss_func = real(batch, model)
            if trainer.step + 1 == overflow_at:
                output = output * float("inf")
            return output, loss_func

        spec = LoopSpec(source=source, forward_step=forward, stat_names=STAT_NAMES,
                        tokens_per_sample=SEQ)
        trainer = Trainer(cfg, state, spec)
        records, params_after = [], []
        for _ in range(overflow_at + 1):
            records.append(trainer.train_step())
            params_after.append([p.detach().clone() for p in state.model[0].parameters()])
        return dict(records=records, params_after=params_after,
                    skipped_steps=trainer.skipped_steps,
                    nonfinite_in_a_row=trainer.nonfinite_in_a_row)


def meta_build(preset: str, overrides: list[str]) -> dict:
    """Build a preset's model on the meta device at a given layout; what this rank holds."""
    from megatron_rrtf.model.build import build_gpt_model

    cfg = load_config(preset, overrides)
    with process_groups(cfg.parallel, 0):
        cfg.validate(world_size=dist.get_world_size())
        vocab = cfg.model.padded_vocab_size(cfg.model.vocab_size or 8000)
        model = build_gpt_model(cfg, vocab, on_meta=True)
        norms = [m for m in model.modules()
                 if isinstance(m, (torch.nn.LayerNorm, torch.nn.RMSNorm))
                 and getattr(m.weight, "sequence_parallel", False)]
        return dict(params=sum(p.numel() for p in model.parameters()),
                    devices={p.device.type for p in model.parameters()},
                    recompute=model.config.recompute_granularity,
                    sequence_parallel_norms=len(norms))
