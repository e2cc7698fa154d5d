"""The parallel layouts that fit a GPU budget, best first by an explicit throughput model.

Candidates: TP a divisor of the GPUs per node that divides the attention heads, query groups (or
is a multiple of them), FFN width and vocabulary padding; PP a divisor of the layers; DP the
rest; virtual stages V in {1, 2, 4} where the layers split evenly; micro-batch sizes dividing
the per-replica batch; recomputation none or full (selective keeps the same tensors as none
with fused attention, memory.py, so it never fits where none does not). Sequence parallelism is on
whenever TP > 1 (it only saves memory) and the distributed optimizer whenever DP > 1.

Throughput model (relative; it ranks layouts, it does not promise tokens/s). Step time =
compute x (1 + bubble) x recompute x TP-communication x small-micro-batch, with
  * compute: the step's model FLOPs / GPUs (the same for every layout);
  * bubble: (PP - 1) / (V x micro-batches) (memory.py), and V > 1 adds 2% per extra stage for
    the extra point-to-point messages;
  * recompute: full 4/3 (a second forward of three passes), selective 1.02, none 1;
  * TP communication: 1 + 0.04 x log2(TP) inside a node (two all-reduces, or SP's all-gather +
    reduce-scatter, per layer and pass over NVLink); across nodes (TP > GPUs per node) x 2 and
    a warning;
  * small micro-batches use the GPU less well: 1 + 0.15 / tokens-per-micro-batch-in-thousands
    (GEMMs of fewer than ~4k rows lose efficiency), so larger micro-batches win when they fit.
Data-parallel gradient reduction overlaps the backward on GPU and is left out. Ties go to fewer
pipeline stages, then less memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from megatron_rrtf.config import RunConfig
from megatron_rrtf.planning.memory import GiB, Layout, MemoryEstimate, estimate

RECOMPUTE_COST = {"none": 1.0, "selective": 1.02, "full": 4.0 / 3.0}
RESERVED_FRACTION = 0.10
"""Kept free per GPU for the CUDA context, allocator fragmentation and communication buffers."""


@dataclass(frozen=True)
class Plan:
    layout: Layout
    memory: MemoryEstimate
    relative_step_time: float     # 1.0 = the ideal of compute alone
    crosses_nodes_with_tp: bool

    @property
    def efficiency(self) -> float:
        return 1.0 / self.relative_step_time


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _tp_fits_model(config: RunConfig, tp: int) -> bool:
    m = config.model
    groups_ok = m.num_query_groups % tp == 0 or tp % m.num_query_groups == 0
    return (m.num_attention_heads % tp == 0 and groups_ok and m.ffn_size % tp == 0
            and m.make_vocab_size_divisible_by % tp == 0 and m.seq_length % tp == 0)


def step_time(layout: Layout, memory: MemoryEstimate, tokens_per_micro_batch: int,
              gpus_per_node: int) -> float:
    tp = layout.tensor_parallel
    vp = layout.virtual_pipeline or 1
    time = (1 + memory.bubble) * RECOMPUTE_COST[layout.recompute]
    time *= 1 + 0.02 * (vp - 1)
    time *= 1 + 0.04 * math.log2(tp)
    if tp > gpus_per_node:
        time *= 2.0
    time *= 1 + 0.15 / (tokens_per_micro_batch / 1000)
    return time


def candidate_layouts(config: RunConfig, gpus: int, gpus_per_node: int) -> list[Layout]:
    m, t = config.model, config.train
    out = []
    for tp in _divisors(gpus):
        if not _tp_fits_model(config, tp):
            continue
        for pp in _divisors(gpus // tp):
            if m.num_layers % pp:
                continue
            dp = gpus // (tp * pp)
            if t.global_batch_size % dp:
                continue
            per_replica = t.global_batch_size // dp
            for vp in (None, 2, 4):
                if vp and (pp == 1 or m.num_layers % (pp * vp)):
                    continue
                for mb in (1, 2, 4, 8, 16):
                    if per_replica % mb:
                        continue
                    micro = per_replica // mb
                    if vp and micro % pp:
                        continue
                    for recompute in ("none", "full"):
                        out.append(Layout(tp, pp, dp, vp, mb, tp > 1, recompute, dp > 1))
    return out


def plan(config: RunConfig, vocab: int, gpus: int, gpu_memory_bytes: float,
         gpus_per_node: int = 8, precision: str = "bf16") -> tuple[list[Plan], list[Plan]]:
    """(layouts that fit, best first; layouts that do not, smallest first) for `gpus` GPUs of
    `gpu_memory_bytes` each (`vocab` padded)."""
    usable = gpu_memory_bytes * (1 - RESERVED_FRACTION)
    fits, too_big = [], []
    for layout in candidate_layouts(config, gpus, gpus_per_node):
        per_replica = config.train.global_batch_size // layout.data_parallel
        micro = per_replica // layout.micro_batch_size
        memory = estimate(config.model, vocab, layout, precision, micro)
        tokens = layout.micro_batch_size * config.model.seq_length
        entry = Plan(layout, memory, step_time(layout, memory, tokens, gpus_per_node),
                     layout.tensor_parallel > gpus_per_node)
        (fits if memory.total <= usable else too_big).append(entry)
    fits.sort(key=lambda p: (round(p.relative_step_time, 6), p.layout.pipeline_parallel,
                             p.memory.total))
    too_big.sort(key=lambda p: p.memory.total)
    return fits, too_big


def parse_bytes(text: str) -> float:
    """"80GiB", "80GB", "141G", "1.5TiB" -> bytes (GB and G read as GiB: GPU memory is quoted
    so)."""
    units = {"tib": 2 ** 40, "tb": 2 ** 40, "t": 2 ** 40, "gib": GiB, "gb": GiB, "g": GiB,
             "mib": 2 ** 20, "mb": 2 ** 20, "m": 2 ** 20}
    s = text.strip().lower()
    for unit, scale in units.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * scale
    return float(s)
