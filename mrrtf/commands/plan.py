"""`mrrtf plan CONFIG... --gpus N --gpu-memory 80GiB`: per-GPU memory of every parallel layout
(TP x PP x DP, virtual stages, micro-batch, recomputation) and the ones that fit, best first
(megatron_rrtf.planning; the formulas and the throughput model are in its docstrings)."""

from __future__ import annotations

import argparse

from mrrtf.commands.config_cmd import add_config_arguments

HELP = "pick TP/PP/DP, micro-batch and recomputation that fit N GPUs, before booking them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--gpus", type=int, required=True, help="GPUs in the job")
    p.add_argument("--gpu-memory", default="80GiB", help="memory per GPU (default 80GiB)")
    p.add_argument("--gpus-per-node", type=int, default=8,
                   help="GPUs per node: TP beyond it crosses nodes (default 8)")
    p.add_argument("--top", type=int, default=10, help="layouts to list (default 10)")


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f}"


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.errors import ConfigError
    from megatron_rrtf.planning.layouts import RESERVED_FRACTION, parse_bytes, plan
    from mrrtf.commands.config_cmd import load_config_arguments

    config = load_config_arguments(args)
    if args.gpus < 1 or args.gpus_per_node < 1:
        raise ConfigError("--gpus and --gpus-per-node must be >= 1")
    if config.model.vocab_size is None:
        raise ConfigError("model.vocab_size is null (taken from the tokenizer at run time): "
                          "give it, e.g. model.vocab_size=51200, to plan")
    memory = parse_bytes(args.gpu_memory)
    vocab = config.model.padded_vocab_size(config.model.vocab_size)
    precision = "bf16" if config.train.precision == "auto" else config.train.precision
    fits, too_big = plan(config, vocab, args.gpus, memory, args.gpus_per_node, precision)
    m = config.model
    print(f"{m.family}, {m.num_layers} layers, hidden {m.hidden_size}, "
          f"{m.num_parameters(vocab) / 1e9:.2f}B parameters, seq {m.seq_length}, global batch "
          f"{config.train.global_batch_size}, {precision}; {args.gpus} GPUs x "
          f"{_gib(memory)} GiB ({args.gpus_per_node} per node, {RESERVED_FRACTION:.0%} kept "
          "free)")
    if not fits:
        smallest = too_big[0] if too_big else None
        print("no layout fits" + (f"; the smallest needs {_gib(smallest.memory.total)} GiB per "
                                  f"GPU: {smallest.layout.describe()}" if smallest else ""))
        return 1
    print(f"{len(fits)} layouts fit ({len(too_big)} do not); best first by the throughput model "
          "(efficiency = 1 / relative step time):\n")
    print("| # | layout | GiB/GPU | weights | grads | optimizer | activations | bubble | "
          "efficiency |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, p in enumerate(fits[: args.top], 1):
        e = p.memory
        warn = " **TP crosses nodes**" if p.crosses_nodes_with_tp else ""
        print(f"| {i} | {p.layout.describe()}{warn} | {_gib(e.total)} | {_gib(e.weights)} | "
              f"{_gib(e.gradients)} | {_gib(e.optimizer)} | {_gib(e.activations)} | "
              f"{e.bubble:.1%} | {p.efficiency:.2f} |")
    best = fits[0].layout
    print("\nas overrides: " + " ".join(overrides_for(best)))
    return 0


def overrides_for(layout) -> list[str]:
    """The config overrides that select `layout`."""
    return [f"parallel.tensor_parallel={layout.tensor_parallel}",
            f"parallel.pipeline_parallel={layout.pipeline_parallel}",
            f"parallel.virtual_pipeline={layout.virtual_pipeline or 'null'}",
            f"parallel.sequence_parallel={str(layout.sequence_parallel).lower()}",
            f"parallel.use_distributed_optimizer={str(layout.distributed_optimizer).lower()}",
            f"train.micro_batch_size={layout.micro_batch_size}",
            f"model.recompute={layout.recompute}"]
