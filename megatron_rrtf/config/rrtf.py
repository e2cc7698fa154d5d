"""RRTF section: problems, evolution, sampling (student + teachers), ranking and loss settings of
the alignment stage. See docs/rrtf.md for where each default comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from megatron_rrtf.errors import ConfigError

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
STOP_MARKERS = ("\n### Instruction", "\n### Response", "<|endoftext|>", "</s>")
"""Where an answer to ALPACA_TEMPLATE ends: the next instruction or response header, or an
end-of-text token. The default of rrtf.stop_markers, the only place it is written."""


@dataclass
class SamplingConfig:
    """How one source (the student, or a teacher model) answers each problem."""

    samples: int = 4
    """Responses per problem from this source (K_source), spread evenly over `temperatures`."""
    temperatures: list[float] = field(default_factory=lambda: [0.8])
    """PanGu-Coder2 samples 'at various temperatures' (values not given)."""
    top_p: float = 0.95
    max_new_tokens: int = 512

    def validate(self, key: str) -> None:
        if self.samples < 0:
            raise ConfigError(f"{key}.samples={self.samples} must be >= 0")
        if not self.temperatures:
            raise ConfigError(f"{key}.temperatures must list at least one temperature")
        if any(t < 0 for t in self.temperatures):
            raise ConfigError(f"{key}.temperatures={self.temperatures} must all be >= 0 "
                              "(0 = greedy)")
        if self.samples % len(self.temperatures):
            raise ConfigError(f"{key}.samples={self.samples} must be a multiple of the "
                              f"{len(self.temperatures)} entries of {key}.temperatures")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{key}.top_p={self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ConfigError(f"{key}.max_new_tokens={self.max_new_tokens} must be >= 1")


@dataclass
class TeacherConfig(SamplingConfig):
    name: str = "teacher"
    """Source tag written on its responses: 'teacher:<name>'."""
    kind: Literal["hf_model", "jsonl"] = "jsonl"
    """hf_model: sample from a local HF model directory; jsonl: read ready-made responses."""
    path: str = ""
    """The HF model directory or the responses JSONL file."""

    def validate(self, key: str) -> None:
        super().validate(key)
        if not self.path:
            raise ConfigError(f"{key}.path is empty: give the {self.kind} teacher's "
                              + ("model directory" if self.kind == "hf_model" else "JSONL file"))
        if not self.name or ":" in self.name:
            raise ConfigError(f"{key}.name={self.name!r} must be non-empty without ':'")


@dataclass
class SampleEngineConfig:
    """Where and how candidates are generated (rrtf.sample): the same prompts, stops and seeds
    whichever backend runs them (megatron_rrtf.generation)."""

    backend: Literal["hf", "vllm"] = "hf"
    """hf: batched `generate` of transformers; vllm: the vLLM engine (extra `gpu`, CUDA only)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present, else the CPU."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bf16 on CUDA, fp32 on the CPU."""
    tensor_parallel: int = 1
    """vllm: GPUs one engine spans (vLLM's tensor_parallel_size); hf: must be 1."""
    gpu_memory_utilization: float = 0.9
    """vllm: share of each GPU's memory the engine may take (weights + KV cache)."""

    def validate(self) -> None:
        if self.tensor_parallel < 1:
            raise ConfigError(f"rrtf.sample.tensor_parallel={self.tensor_parallel} must be >= 1")
        if self.backend == "hf" and self.tensor_parallel != 1:
            raise ConfigError(f"rrtf.sample.tensor_parallel={self.tensor_parallel} needs "
                              "rrtf.sample.backend=vllm (the hf backend runs on one device)")
        if self.backend == "vllm" and self.device == "cpu":
            raise ConfigError("rrtf.sample.backend=vllm runs on CUDA only: set "
                              "rrtf.sample.device=auto|cuda or rrtf.sample.backend=hf")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"rrtf.sample.gpu_memory_utilization="
                              f"{self.gpu_memory_utilization} must be in (0, 1]")


@dataclass
class RRTFConfig:
    # --- data -------------------------------------------------------------------------------
    problems: str | None = None
    """Problems JSONL (id, instruction, tests[, entry_point, responses])."""
    prompt_template: str = ALPACA_TEMPLATE
    """Must contain {instruction} once."""
    quote_instruction: bool = True
    """Wrap the instruction in triple quotes (PanGu-Coder2's format)."""
    stop_markers: list[str] = field(default_factory=lambda: list(STOP_MARKERS))
    """Sampling stops and code extraction cuts at these (ranking, training, held-out eval)."""
    decontam_ngram: int = 10
    """Word n-gram size for HumanEval decontamination."""
    decontam_threshold: float = 0.1
    """Drop a problem when >= this fraction of its instruction's (or tests') n-grams is in
    HumanEval."""
    evol_rounds: int = 0
    """Evol-Instruct rounds applied to the seed problems (0 = use the problems as given)."""
    near_dup_jaccard: float = 0.8
    """Evolution dedup: word 5-gram Jaccard at or above this is a near duplicate."""

    # --- sampling ---------------------------------------------------------------------------
    student: SamplingConfig = field(default_factory=SamplingConfig)
    teachers: list[TeacherConfig] = field(default_factory=list)
    rounds: int = 1
    """Sample -> rank -> train iterations (each samples from the latest student)."""
    train_data_parallel: int = 1
    """Data-parallel replicas of each round's training in `mrrtf rrtf run`: a round trains on
    parallel.tensor_parallel x parallel.pipeline_parallel x this processes, in the `rrtf run`
    process when that is 1, else as a torchrun job on this node (align.rounds)."""
    generation_batch_size: int = 64
    """Rows (prompt x sample) per generate call when sampling candidates and answering held-out
    problems."""
    sample: SampleEngineConfig = field(default_factory=SampleEngineConfig)
    """Backend, device and dtype of every model that samples (student, hf_model teachers,
    held-out evaluation)."""
    sample_chunk: int = 64
    """Problems per sampling chunk: the unit written atomically, resumed and sharded."""

    # --- verdicts ---------------------------------------------------------------------------
    executor: Literal["local", "ray"] = "local"
    """Where candidates' tests run: local (sandboxes on this machine's cores) or ray (Ray
    tasks, each running the same sandbox on the node it lands on; extra `ray`)."""
    ray_address: str | None = None
    """ray: the cluster to join ("auto", "ray://head:10001"); null: RAY_ADDRESS or, without
    it, a Ray instance started on this machine."""
    verdict_workers: int | None = None
    """Sandboxes at once: local, on this machine (null: its CPU count); ray, Ray tasks in
    flight (null: the cluster's CPU count)."""

    # --- loss -------------------------------------------------------------------------------
    loss: Literal["rrtf", "rrhf"] = "rrtf"
    rank_weight: float = 1.0
    """0 = plain SFT on the best (teacher) response."""
    sft_weight: float = 1.0
    tie_weight: float = 0.5
    """rrtf: pair weight when teacher and student score the same (teacher ranks higher)."""
    length_penalty: float = 1.0
    """p = logp_sum / length ** length_penalty, each response by its own length."""
    min_ft_score: float | None = None
    """rrtf: SFT only on a best teacher scoring at least this (3.0 = all tests pass)."""
    pack_candidates: bool = True
    """Pack a prompt's candidates into one row (shared prompt, block mask) instead of padding."""

    def validate(self) -> None:
        if self.rank_weight < 0 or self.sft_weight < 0:
            raise ConfigError("rrtf.rank_weight and rrtf.sft_weight must be >= 0")
        if self.rank_weight == 0 and self.sft_weight == 0:
            raise ConfigError("rrtf.rank_weight and rrtf.sft_weight are both 0: nothing to train")
        if self.tie_weight < 0:
            raise ConfigError(f"rrtf.tie_weight={self.tie_weight} must be >= 0")
        if self.length_penalty < 0:
            raise ConfigError(f"rrtf.length_penalty={self.length_penalty} must be >= 0")
        if self.prompt_template.count("{instruction}") != 1:
            raise ConfigError("rrtf.prompt_template must contain {instruction} exactly once")
        if self.decontam_ngram < 1:
            raise ConfigError(f"rrtf.decontam_ngram={self.decontam_ngram} must be >= 1")
        if not 0 < self.decontam_threshold <= 1:
            raise ConfigError(f"rrtf.decontam_threshold={self.decontam_threshold} must be in "
                              "(0, 1]")
        if not 0 < self.near_dup_jaccard <= 1:
            raise ConfigError(f"rrtf.near_dup_jaccard={self.near_dup_jaccard} must be in (0, 1]")
        if self.generation_batch_size < 1:
            raise ConfigError(f"rrtf.generation_batch_size={self.generation_batch_size} must be "
                              ">= 1")
        if self.sample_chunk < 1:
            raise ConfigError(f"rrtf.sample_chunk={self.sample_chunk} must be >= 1")
        if self.verdict_workers is not None and self.verdict_workers < 1:
            raise ConfigError(f"rrtf.verdict_workers={self.verdict_workers} must be >= 1 or null")
        if self.executor == "local" and self.ray_address:
            raise ConfigError(f"rrtf.ray_address={self.ray_address!r} is set but "
                              "rrtf.executor=local: set rrtf.executor=ray or drop the address")
        self.sample.validate()
        if self.train_data_parallel < 1:
            raise ConfigError(f"rrtf.train_data_parallel={self.train_data_parallel} must be >= 1")
        if self.evol_rounds < 0 or self.rounds < 1:
            raise ConfigError(f"rrtf.evol_rounds={self.evol_rounds} must be >= 0 and "
                              f"rrtf.rounds={self.rounds} >= 1")
        self.student.validate("rrtf.student")
        names = set()
        for i, teacher in enumerate(self.teachers):
            teacher.validate(f"rrtf.teachers[{i}]")
            if teacher.name in names:
                raise ConfigError(f"rrtf.teachers[{i}].name={teacher.name!r} is used twice")
            names.add(teacher.name)
