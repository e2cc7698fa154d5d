"""Per-GPU memory of one parallel layout, from the model's shape. One place for the formulas:

* **Parameters per rank**: exact counts of this code's megatron model (the same terms as
  `ModelConfig.num_parameters`): matrices and column-parallel biases split over TP; norms and
  row-parallel biases replicated; the fullest pipeline stage (the first holds the embeddings,
  the last the output layer and final norm).
* **Weights, gradients, optimizer state** (Rajbhandari et al. 2020, ZeRO, §3.1: 2 + 2 + 12 bytes
  per parameter for mixed-precision Adam): weights in the training dtype (2 bytes bf16/fp16, 4
  fp32); gradients accumulated and reduced in fp32 (4 bytes, megatron's `grad_reduce_in_fp32`);
  Adam's two moments in fp32 (8 bytes) plus an fp32 main copy of the weights under bf16/fp16
  (4 bytes; in fp32 the main weights are the model's own). The distributed optimizer (ZeRO-1)
  divides the optimizer state by the data-parallel size.
* **Activations** (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models", §4, re-derived for this model): the tensors a layer keeps for backward,
  per token, in activation elements: two norm inputs (2h), the QKV input (h), fused attention's
  q, k, v and output (2h + kv, kv = K and V widths together; flash-attn and SDPA keep no s x s
  scores), the projection input (h), the MLP input (h), and the MLP hidden (starcoder: GELU input
  and output, 2f; rope: 6f as measured, the gate/up output 2f plus the SiLU, product and their
  copies). Checked against what a CPU step really keeps (tests/memory_probe.py): within 14% per
  layer for both families. Sequence parallelism divides all of it by TP
  (megatron keeps the sequence-split inputs and gathers again in backward); TP without SP
  splits only the attention and MLP insides. Full recomputation keeps each layer's input only
  (h), plus one layer's activations while it is recomputed. Selective recomputation (core
  attention) saves nothing with fused attention (measured: benchmarks/bench_scale_memory.py).
  The output layer keeps its input and fp32 logits of V/TP per token for the cross entropy; with
  full recomputation the peak is the larger of the logits and one recomputed layer (the logits
  are freed before the layers' backward begins).
* **Pipeline**: with 1F1B the first stage holds min(PP, micro-batches) micro-batches in flight
  (a rank holds about the whole model's activations for one micro-batch, Korthikanti §4.2.3),
  the last stage one plus the output layer's; interleaving multiplies the first stage's by
  1 + (PP - 1) / (PP x V) (Narayanan et al. 2021, §2.2). The estimate is the larger of the first
  and last stage (middle stages hold less than the first). The bubble is (PP - 1) / (V x
  micro-batches) of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_rrtf.config import ModelConfig, RunConfig

GiB = 2 ** 30


@dataclass(frozen=True)
class Layout:
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    data_parallel: int = 1
    virtual_pipeline: int | None = None
    micro_batch_size: int = 1
    sequence_parallel: bool = False
    recompute: str = "none"                 # none | selective | full
    distributed_optimizer: bool = False

    @classmethod
    def of(cls, config: RunConfig, gpus: int) -> Layout:
        """The layout `config` selects on `gpus` GPUs (the inverse of `mrrtf plan`'s overrides)."""
        p = config.parallel
        return cls(p.tensor_parallel, p.pipeline_parallel, p.data_parallel(gpus),
                   p.virtual_pipeline, config.train.micro_batch_size, p.sequence_parallel,
                   config.model.recompute, p.use_distributed_optimizer)

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel * self.data_parallel

    def describe(self) -> str:
        vp = f" x V{self.virtual_pipeline}" if self.virtual_pipeline else ""
        flags = [f"mb {self.micro_batch_size}", f"recompute {self.recompute}"]
        if self.sequence_parallel:
            flags.append("SP")
        if self.distributed_optimizer:
            flags.append("dist-opt")
        return (f"TP{self.tensor_parallel} x PP{self.pipeline_parallel}{vp} x "
                f"DP{self.data_parallel} ({', '.join(flags)})")


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int           # held by the fullest pipeline stage of one rank
    weights: int              # bytes
    gradients: int
    optimizer: int
    activations: int
    bubble: float             # fraction of the step the pipeline idles

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations


def _layer_parameters(m: ModelConfig, tp: int) -> float:
    h, f, kv = m.hidden_size, m.ffn_size, 2 * m.num_query_groups * m.kv_channels
    glu = 2 if m.family == "rope" else 1
    split = h * (h + kv) + h * h + glu * h * f + f * h          # matrices
    replicated = 0
    if m.family == "starcoder":
        split += (h + kv) + f                                    # column-parallel biases
        replicated += 2 * h + 2 * 2 * h                          # row-parallel biases, 2 LayerNorms
    else:
        replicated += 2 * h                                      # 2 RMSNorms
    return split / tp + replicated


def stage_parameters(m: ModelConfig, vocab: int, tp: int, pp: int) -> tuple[int, int]:
    """Parameters on one TP rank of the first and of the last pipeline stage (`vocab` padded;
    the same stage when PP = 1)."""
    h = m.hidden_size
    layers = m.num_layers // pp * _layer_parameters(m, tp)
    embedding = vocab * h / tp + (m.seq_length * h if m.family == "starcoder" else 0)
    final_norm = 2 * h if m.family == "starcoder" else h
    output = (0 if m.tie_embeddings else vocab * h / tp) + final_norm
    if pp == 1:
        whole = int(layers + embedding + output)
        return whole, whole
    if m.tie_embeddings:
        output += vocab * h / tp
    return int(layers + embedding), int(layers + output)


def layer_activation_bytes(m: ModelConfig, tokens: int, tp: int, sp: bool, recompute: str,
                           element: int) -> float:
    """Bytes one layer keeps for backward for `tokens` tokens of one micro-batch."""
    h, f, kv = m.hidden_size, m.ffn_size, 2 * m.num_query_groups * m.kv_channels
    mlp_hidden = 6 * f if m.family == "rope" else 2 * f
    outside = 2 * h + h + h                     # norm inputs, QKV input, MLP input
    inside = (2 * h + kv) + h + mlp_hidden      # attention q/k/v/out, projection input, MLP
    if recompute == "full":
        per_token = h / tp if sp else h
    elif sp:
        per_token = (outside + inside) / tp
    else:
        per_token = outside + inside / tp
    return per_token * tokens * element


def output_activation_bytes(m: ModelConfig, vocab: int, tokens: int, tp: int, sp: bool,
                            element: int) -> float:
    """The final norm's and output layer's inputs, and fp32 logits for the cross entropy."""
    h = m.hidden_size
    inputs = 2 * h / tp if sp else 2 * h
    return tokens * (inputs * element + 4 * vocab / tp)


def estimate(m: ModelConfig, vocab: int, layout: Layout, precision: str,
             microbatches: int) -> MemoryEstimate:
    """Per-GPU memory of `layout` for the model `m` (`vocab` padded): the fuller of the first
    and last pipeline stage. `microbatches` per step per data-parallel rank; precision fp32 |
    bf16 | fp16."""
    tp, pp, vp = layout.tensor_parallel, layout.pipeline_parallel, layout.virtual_pipeline or 1
    element = 4 if precision == "fp32" else 2
    tokens = layout.micro_batch_size * m.seq_length
    sp = layout.sequence_parallel
    per_layer = layer_activation_bytes(m, tokens, tp, sp, layout.recompute, element)
    output = output_activation_bytes(m, vocab, tokens, tp, sp, element)
    if layout.recompute == "full":   # the logits, or later one layer rebuilt for its backward
        output = max(output, layer_activation_bytes(m, tokens, tp, sp, "none", element))
    layers = m.num_layers // pp
    first_in_flight = min(pp, microbatches) * (1 + (pp - 1) / (pp * vp) if vp > 1 else 1)
    stages = []
    for params, held in zip(stage_parameters(m, vocab, tp, pp),
                            (layers * first_in_flight * per_layer + (output if pp == 1 else 0),
                             layers * per_layer + output)):
        optimizer = params * (8 + (4 if element == 2 else 0))
        if layout.distributed_optimizer:
            optimizer /= layout.data_parallel
        stages.append(MemoryEstimate(parameters=params, weights=params * element,
                                     gradients=params * 4, optimizer=int(optimizer),
                                     activations=int(held), bubble=0.0))
    worst = max(stages, key=lambda e: e.total)
    bubble = (pp - 1) / (vp * microbatches) if pp > 1 else 0.0
    return MemoryEstimate(worst.parameters, worst.weights, worst.gradients, worst.optimizer,
                          worst.activations, bubble)
