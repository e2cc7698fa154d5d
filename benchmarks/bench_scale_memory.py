"""Memory at scale, on CPU: what activation recomputation and the distributed optimizer save, each
against a baseline measured in the same run.

Claims (goals):
  * recompute: with model.recompute=full (uniform, 1 layer) the activations kept for backward
    are <= 0.6x those of model.recompute=none, on a ~100M-parameter shape (StarCoder family, MQA,
    12 layers, hidden 768, 12 heads, vocab 32000 padded) at seq 2048, micro-batch 1, fp32: one
    forward + backward of the model's loss. Activation memory is the sum of the unique storages
    of the tensors saved for backward (torch.autograd.graph.saved_tensors_hooks; weights,
    gradients and their views left out), all held at the end of the forward (peak RSS is not
    used: the allocator keeps freed pages). The backward of full recompute re-creates one
    layer's activations at a time on top of that. selective (core attention only) is printed
    too, and each mode's step time against none's (the price of recomputing). Each mode runs in
    its own process; ~7 minutes on 2 busy CPU cores (--repeats 1 is quicker).
  * distributed optimizer: at data-parallel size 2 each rank holds ~0.5x the optimizer state of
    the plain optimizer: Adam's exp_avg and exp_avg_sq plus fp32 main parameters that are not
    views of the model's own parameters (none in fp32, a copy in bf16), after one training step
    (Trainer.train_step) of a 4-layer, hidden-256 model; two gloo processes, fp32 and bf16.

Lines read `name: ours X, baseline Y, ratio baseline/ours` (higher is better), then the fraction
the goal is stated in.

    python benchmarks/bench_scale_memory.py [--parts recompute,optimizer] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(1, str(ROOT / "tests"))     # tests/distributed.py, tests/engine_workers.py
from common import median_seconds, report  # noqa: E402

SEQ, VOCAB = 2048, 32000
SHAPE_100M = ["model.family=starcoder", "model.num_layers=12", "model.hidden_size=768",
              "model.num_attention_heads=12", "model.num_query_groups=1",
              f"model.seq_length={SEQ}", "train.precision=fp32"]
MODES = ("none", "selective", "full")
MB = 2.0 ** 20


# ---- activation memory per recompute mode (one process per mode) ---------------------------

def recompute_child(mode: str, repeats: int) -> dict:
    import torch

    from megatron_rrtf.config import load_config
    from megatron_rrtf.model.build import build_gpt_model
    from megatron_rrtf.parallel.init import process_groups

    cfg = load_config("configs/tiny.yaml", [*SHAPE_100M, f"model.recompute={mode}",
                                            "model.recompute_method=uniform",
                                            "model.recompute_num_layers=1"])
    with process_groups(cfg.parallel, 0):
        model = build_gpt_model(cfg, cfg.model.padded_vocab_size(VOCAB))
        model.train()
        tokens = torch.randint(0, VOCAB, (1, SEQ + 1), generator=torch.Generator().manual_seed(0))
        pos = torch.arange(SEQ)[None]

        def forward():
            return model(tokens[:, :-1], pos, None, labels=tokens[:, 1:]).float().mean()

        def step():
            model.zero_grad(set_to_none=False)     # grads stay allocated: not activations
            forward().backward()

        step()                                     # warm-up; allocates every .grad
        weights = {t.untyped_storage().data_ptr() for p in model.parameters()
                   for t in (p, p.grad) if t is not None}
        saved: dict[int, int] = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        model.zero_grad(set_to_none=False)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = forward()                       # everything packed is held until backward
        loss.backward()
        seconds = median_seconds(step, repeats=repeats, warmup=0)
        params = sum(p.numel() for p in model.parameters())
    return dict(saved_bytes=sum(saved.values()), saved_storages=len(saved), step_s=seconds,
                params=params, loss=loss.item())


def recompute_part(repeats: int) -> None:
    results = {}
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--repeats",
                              str(repeats)], cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            print(f"recompute={mode}: child failed (exit {out.returncode}):\n{out.stderr[-3000:]}",
                  flush=True)
            continue
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"recompute={mode}: {r['params'] / 1e6:.1f}M params, saved for backward "
              f"{r['saved_bytes'] / MB:.0f} MB in {r['saved_storages']} storages, step "
              f"{r['step_s']:.2f} s, loss {r['loss']:.4f}", flush=True)
    if "none" not in results:
        print("no baseline (recompute=none failed): no ratios", flush=True)
        return
    base = results["none"]
    for mode in MODES[1:]:
        if mode not in results:
            continue
        r = results[mode]
        report(f"activation memory saved for backward, ~100M seq {SEQ} fp32, recompute={mode} "
               "vs none (MB, lower is better)", r["saved_bytes"] / MB, base["saved_bytes"] / MB,
               "MB", higher_is_better=False)
        fraction = r["saved_bytes"] / base["saved_bytes"]
        goal = f" (goal <= 0.6x: {'ok' if fraction <= 0.6 else 'MISSED'})" if mode == "full" \
            else ""
        print(f"  = {fraction:.2f}x of none's activation memory{goal}", flush=True)
        report(f"fwd+bwd step time, recompute={mode} vs none (s/step, lower is better; the "
               "price of recomputing)", r["step_s"], base["step_s"], "s",
               higher_is_better=False)
        print(f"  = {r['step_s'] / base['step_s']:.2f}x of none's step time", flush=True)


# ---- optimizer state per rank at DP=2 -------------------------------------------------------

def optimizer_bytes(state) -> dict:
    """Bytes the optimizer holds on this rank: Adam moments, its step counters, and main params
    that are not (views of) the model's parameters; each storage counted once."""
    import torch

    from megatron_rrtf.training.setup import sub_optimizers

    model_storages = {p.untyped_storage().data_ptr() for chunk in state.model
                      for p in chunk.parameters()}
    seen: set[int] = set()
    out = dict(moments=0, steps=0, main_params=0, main_param_views=0)

    def count(t: torch.Tensor, key: str) -> None:
        storage = t.untyped_storage()
        if storage.data_ptr() in seen:
            return
        seen.add(storage.data_ptr())
        out[key] += storage.nbytes()

    for opt in sub_optimizers(state.optimizer):
        inner = opt.optimizer
        for group in inner.param_groups:
            for p in group["params"]:
                if p.untyped_storage().data_ptr() in model_storages:
                    out["main_param_views"] += p.numel() * p.element_size()
                else:
                    count(p, "main_params")
        for per_param in inner.state.values():
            for name, value in per_param.items():
                if torch.is_tensor(value):
                    count(value, "steps" if name == "step" else "moments")
    out["total"] = out["moments"] + out["main_params"]
    return out


def optimizer_worker(distributed: bool, precision: str) -> dict:
    """One rank: build the training stack, take one step, count the optimizer's bytes."""
    from engine_workers import VOCAB as TINY_VOCAB
    from engine_workers import SyntheticBatches, engine_config
    from megatron.core import parallel_state

    from megatron_rrtf.parallel.init import process_groups
    from megatron_rrtf.training.loop import LoopSpec, Trainer
    from megatron_rrtf.training.setup import build_model_state, sub_optimizers
    from pretrain.forward import STAT_NAMES, make_forward_step

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = engine_config(Path(run_dir), "model.num_layers=4", "model.hidden_size=256",
                            f"parallel.use_distributed_optimizer={str(distributed).lower()}",
                            f"train.precision={precision}")
        with process_groups(cfg.parallel, cfg.train.seed):
            state = build_model_state(cfg, TINY_VOCAB)
            spec = LoopSpec(source=SyntheticBatches(cfg.train.global_batch_size,
                                                    cfg.train.micro_batch_size),
                            forward_step=make_forward_step(False), stat_names=STAT_NAMES,
                            tokens_per_sample=cfg.model.seq_length)
            record = Trainer(cfg, state, spec).train_step()
            counted = optimizer_bytes(state)
            counted.update(
                params=sum(p.numel() for chunk in state.model for p in chunk.parameters()),
                dp=parallel_state.get_data_parallel_world_size(), loss=record["loss"],
                skipped=bool(record["skipped"]),
                optimizer=type(state.optimizer).__name__ + "/" + ",".join(
                    type(o).__name__ for o in sub_optimizers(state.optimizer)))
            return counted


def optimizer_part() -> None:
    import bench_scale_memory as this  # the worker, importable by the spawned processes
    from distributed import run_distributed

    for precision in ("fp32", "bf16"):
        results = {}
        for distributed in (False, True):
            try:
                ranks = run_distributed(this.optimizer_worker, 2, distributed, precision)
            except Exception as exc:  # noqa: BLE001 - report and go on to the next case
                print(f"{precision}, use_distributed_optimizer={distributed}: failed: "
                      f"{' '.join(str(exc).split())[-1500:]}", flush=True)
                continue
            results[distributed] = ranks
            for rank, r in enumerate(ranks):
                print(f"{precision}, use_distributed_optimizer={str(distributed).lower()}, rank "
                      f"{rank} of DP {r['dp']}: {r['params'] / 1e6:.2f}M params, optimizer "
                      f"{r['optimizer']}: Adam moments {r['moments'] / MB:.2f} MB + fp32 main "
                      f"params {r['main_params'] / MB:.2f} MB (not views) = "
                      f"{r['total'] / MB:.2f} MB; step counters {r['steps']} B; main params "
                      f"that are model views {r['main_param_views'] / MB:.2f} MB; loss "
                      f"{r['loss']:.4f}{', SKIPPED' if r['skipped'] else ''}", flush=True)
        if len(results) < 2:
            continue
        ours = max(r["total"] for r in results[True])
        base = max(r["total"] for r in results[False])
        report(f"optimizer state per rank (largest rank), DP=2, {precision}: distributed "
               "optimizer vs plain (MB, lower is better)", ours / MB, base / MB, "MB",
               higher_is_better=False)
        fraction = ours / base
        print(f"  = {fraction:.3f}x of the plain optimizer's (goal ~0.5x: "
              f"{'ok' if 0.45 <= fraction <= 0.55 else 'MISSED'})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="recompute,optimizer")
    parser.add_argument("--repeats", type=int, default=2, help="timed fwd+bwd steps per mode")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(recompute_child(args.child, args.repeats)), flush=True)
        return
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    parts = args.parts.split(",")
    if "recompute" in parts:
        recompute_part(args.repeats)
    if "optimizer" in parts:
        optimizer_part()


if __name__ == "__main__":
    main()
