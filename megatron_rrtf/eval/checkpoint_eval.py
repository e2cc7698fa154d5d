"""`evaluate_checkpoint`: every evaluation of one checkpoint into one results dict.

The checkpoint is our run dir / step dir, a Hugging Face model dir, or a CTranslate2 model dir
(`mrrtf export --format ct2`; `Generator.load` picks the backend by what the dir holds). Ours is
exported once
through the one export cache (`convert.export_cache`: RUN/eval/hf_step_XXXXXXXX, atomic, reused
while it is the export of this very save). Completions come from `generation.Generator`, the
one generation path (prompts fitted to the context, stops, batching, device). Tasks:

- `perplexity`: held-out loss / perplexity / bits-per-byte per domain with our megatron model
  (`eval.perplexity`; needs the run's config and data, so an HF dir works only if it is our
  export and its step dir still exists);
- `humaneval`: greedy pass@1 and sampled pass@k (`num_samples` completions per problem,
  temperature / top_p) with the exported HF model;
- `infill`: HumanEval infilling (single-line, multi-line, random-span) in the span-corruption
  and FIM PSM/SPM prompt formats, greedy pass@1 (`eval.infill_formats`);
- `infill_loss`: infill loss (NLL and bits-per-byte of the true middle given prefix and suffix,
  our megatron model) and greedy exact match (the exported HF model), per prompt format and mask
  type, on holes cut in the run's own held-out code (`eval.infill_loss`): the infilling metrics
  that still move for a tiny model. Needs our training checkpoint, like `perplexity`.

A CTranslate2 dir runs HumanEval and infilling through the same prompts, stops and sandbox;
perplexity is skipped there (it runs our megatron model, not the converted weights). The
results name the backend and the CTranslate2 quantization.

Prompts longer than the model's context minus `max_new_tokens` lose their start (HumanEval,
counted as `prompts_truncated`) or the far ends of prefix and suffix (infilling). The results
record the checkpoint, its step and config, every option (sampling settings, seed, limits) and
the wall time of each task.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from megatron_rrtf.errors import ConfigError

log = logging.getLogger(__name__)

TASKS = ("perplexity", "humaneval", "infill", "infill_loss")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how much of it."""

    tasks: tuple[str, ...] = TASKS
    limit: int | None = None
    """HumanEval problems (the first N); infilling tasks are built from the same problems."""
    num_samples: int = 10
    """Sampled completions per problem for pass@k (0: greedy pass@1 only)."""
    ks: tuple[int, ...] = (1, 10)
    """pass@k of the sampled completions; k > num_samples is dropped."""
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    batch_size: int = 32
    infill_tasks: int | None = 100
    """Tasks per mask type (drawn evenly, seeded); None: all of them."""
    infill_formats: tuple[str, ...] = ("span", "fim_psm", "fim_spm")
    infill_loss_tasks: int = 64
    """Held-out code holes per mask type for infill loss and exact match."""
    infill_max_middle_tokens: int = 48
    """Longest middle (tokens) of a held-out hole; exact match generates this many + 8."""
    infill_exact_match: bool = True
    """Also generate the middles greedily for exact match (else the loss only, much faster)."""
    ppl_samples: int | None = None
    """Held-out samples per domain (the first N); None: all."""
    timeout_s: float = 5.0
    """Sandbox wall-clock limit per program."""
    workers: int | None = None
    seed: int = 0
    device: str = "auto"
    """auto: CUDA in bf16 when present, else the CPU in fp32 (generation.resolve_device)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default); 1 is fastest for tiny models on a busy CPU."""
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ConfigError(f"--tasks {','.join(self.tasks)}: choose from {','.join(TASKS)}")
        from megatron_rrtf.eval.infill_formats import INFILL_FORMATS

        bad = sorted(set(self.infill_formats) - set(INFILL_FORMATS))
        if bad:
            raise ConfigError(f"infill formats {bad}: choose from {', '.join(INFILL_FORMATS)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.num_samples < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("need --samples >= 0, --max-new-tokens >= 1, --batch-size >= 1")
        if self.infill_loss_tasks < 1 or self.infill_max_middle_tokens < 1:
            raise ConfigError("need --infill-loss-tasks >= 1 and --infill-max-middle-tokens >= 1")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    hf_dir: Path
    step_dir: Path | None
    """Our step dir (None for a foreign HF model)."""
    step: int | None
    consumed_tokens: int | None
    config: dict[str, Any] | None
    """The run's resolved config (step_dir/config.yaml)."""


def _step_meta(step_dir: Path) -> dict[str, Any]:
    path = step_dir / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve_checkpoint(path: str | Path) -> ResolvedCheckpoint:
    """Our run/step dir (exported through the cache if needed) or an HF model dir (with our
    step dir behind it when it is our export)."""
    from megatron_rrtf.convert.export_cache import hf_model_dir, source_step_dir

    path = Path(path)
    hf_dir = hf_model_dir(path)
    if hf_dir == path:
        step_dir = source_step_dir(path)
    else:
        from megatron_rrtf.checkpoint.manager import resolve_step_dir

        step_dir = resolve_step_dir(path)
    config = yaml.safe_load((step_dir / "config.yaml").read_text()) if step_dir else None
    meta = _step_meta(step_dir) if step_dir else {}
    return ResolvedCheckpoint(hf_dir, step_dir, meta.get("step"), meta.get("consumed_tokens"),
                              config)


def default_results_path(path: str | Path) -> Path:
    """RUN/eval/results.json for our checkpoints (where `mrrtf compare` looks), HF/eval/... else."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path / "eval" / "results.json"
    from megatron_rrtf.checkpoint.manager import resolve_step_dir
    from megatron_rrtf.convert.export_cache import eval_dir

    return eval_dir(resolve_step_dir(path)) / "results.json"


def run_humaneval(generator, problems: dict, options: EvalOptions) -> dict[str, Any]:
    """Greedy pass@1 and, with num_samples > 0, sampled pass@k."""
    from megatron_rrtf.eval.humaneval import HUMANEVAL_LIMITS, HUMANEVAL_STOP, evaluate_completions
    from megatron_rrtf.generation.generator import Sampling

    prompts, truncated = generator.fit([p["prompt"] for p in problems.values()],
                                       options.max_new_tokens)
    limits = dataclasses.replace(HUMANEVAL_LIMITS, timeout_s=options.timeout_s)
    out: dict[str, Any] = {"num_problems": len(problems), "prompts_truncated": truncated}
    runs = [("greedy", 0.0, 1, (1,))]
    if options.num_samples > 0:
        runs.append(("sampled", options.temperature, options.num_samples, options.ks))
    for name, temperature, n, ks in runs:
        sampling = Sampling(max_new_tokens=options.max_new_tokens, temperature=temperature,
                            top_p=options.top_p if temperature > 0 else 1.0, num_samples=n,
                            batch_size=options.batch_size, stop=HUMANEVAL_STOP,
                            seed=options.seed)
        samples = generator.generate(prompts, sampling, progress=options.progress,
                                     desc=f"humaneval {name}")
        completions = dict(zip(problems, samples))
        report = evaluate_completions(completions, ks=ks, problems=problems, limits=limits,
                                      workers=options.workers, progress=options.progress)
        out[name] = {
            "temperature": temperature, "top_p": sampling.top_p, "num_samples": n,
            "pass@k": {str(k): v for k, v in report["pass@k"].items()},
            "outcomes": {t: [r["outcome"] for r in rs] for t, rs in report["tasks"].items()},
            "harness_errors": sum(r.get("error_type") == "HarnessError"
                                  for rs in report["tasks"].values() for r in rs),
            **({"completions": {t: c[0] for t, c in completions.items()}}
               if name == "greedy" else {}),
        }
    return out


def run_infill(generator, problems: dict, options: EvalOptions) -> dict[str, Any]:
    """pass@1 per prompt format and mask type; a format the tokenizer cannot express is skipped
    with the reason."""
    from megatron_rrtf.eval.humaneval import HUMANEVAL_LIMITS
    from megatron_rrtf.eval.infill_formats import (
        INFILL_KINDS,
        PROMPT_SPECIAL_TOKENS,
        missing_tokens,
        pick_tasks,
        score_format,
    )
    from megatron_rrtf.generation.generator import Sampling
    from megatron_rrtf.tokenizer.loader import load_tokenizer

    # token_to_id / special_ids / our encoding, over the model directory's tokenizer files
    ours = load_tokenizer(generator.tokenizer.name_or_path)
    budget = generator.prompt_budget(options.max_new_tokens)
    budget = None if budget is None else budget - PROMPT_SPECIAL_TOKENS
    limits = dataclasses.replace(HUMANEVAL_LIMITS, timeout_s=options.timeout_s)
    tasks_by_kind = {kind: pick_tasks(problems, kind, options.infill_tasks, options.seed)
                     for kind in INFILL_KINDS}
    out: dict[str, Any] = {"num_tasks": {k: len(t) for k, t in tasks_by_kind.items()}}
    for fmt in options.infill_formats:
        missing = missing_tokens(fmt, ours.token_to_id)
        if missing:
            out[fmt] = {"skipped": f"the tokenizer lacks {', '.join(missing)}, which the {fmt} "
                                   "prompt format needs"}
            continue

        def complete(prompts, fmt=fmt):
            sampling = Sampling(max_new_tokens=options.max_new_tokens,
                                batch_size=options.batch_size,
                                stop_token_ids=tuple(prompts[0].stop_ids), seed=options.seed)
            middles = generator.generate([p.prompt_ids for p in prompts], sampling,
                                         progress=options.progress, desc=f"infill {fmt}")
            return [samples[0] for samples in middles]

        out[fmt] = score_format(tasks_by_kind, fmt, complete, ours.encode, ours.special_ids,
                                budget, limits=limits, workers=options.workers,
                                progress=options.progress)
    return out


def run_infill_loss(step_dir: Path, generator, options: EvalOptions) -> dict[str, Any]:
    """Infill loss (and exact match when `generator` is given) per prompt format and mask type
    on the run's held-out code; a format the tokenizer cannot express is skipped with the
    reason."""
    from megatron_rrtf.config import ParallelConfig, load_config
    from megatron_rrtf.data.stream import heldout_documents
    from megatron_rrtf.eval.infill_formats import (
        INFILL_KINDS,
        PROMPT_SPECIAL_TOKENS,
        missing_tokens,
    )
    from megatron_rrtf.eval.infill_loss import (
        exact_match,
        heldout_infill_tasks,
        infill_loss,
        megatron_token_nll,
    )
    from megatron_rrtf.eval.perplexity import load_megatron_model
    from megatron_rrtf.parallel.init import process_groups
    from megatron_rrtf.tokenizer.loader import load_tokenizer

    config = load_config(step_dir / "config.yaml")
    tokenizer = load_tokenizer(config.data.tokenizer)
    m = config.model
    docs = [tokenizer.decode(d.tolist()) for d in heldout_documents(config, tokenizer)]
    # a quarter of the context at most, so the prompt keeps most of it
    max_middle = min(options.infill_max_middle_tokens, max(m.seq_length // 4, 1))
    tasks_by_kind = {kind: heldout_infill_tasks(docs, kind, options.infill_loss_tasks,
                                                tokenizer.encode, max_middle, options.seed)
                     for kind in INFILL_KINDS}
    out: dict[str, Any] = {"num_tasks": {k: len(t) for k, t in tasks_by_kind.items()},
                           "num_documents": len(docs)}
    formats = []
    for fmt in options.infill_formats:
        missing = missing_tokens(fmt, tokenizer.token_to_id)
        if missing:
            out[fmt] = {"skipped": f"the tokenizer lacks {', '.join(missing)}, which the {fmt} "
                                   "prompt format needs"}
        else:
            formats.append(fmt)
    if not formats:
        return out
    ids = tokenizer.special_ids  # every format left has its tokens
    with process_groups(ParallelConfig(), config.train.seed):
        model = load_megatron_model(config, step_dir, m.padded_vocab_for(tokenizer.vocab_size))
        losses = infill_loss(megatron_token_nll(model, m.attention_backend == "local"),
                             tasks_by_kind, formats, tokenizer.encode, ids, m.seq_length)
    for fmt in formats:
        out[fmt] = losses[fmt]
    if generator is not None:
        from megatron_rrtf.generation.generator import Sampling

        max_new = max_middle + 8
        budget = generator.prompt_budget(max_new)
        budget = None if budget is None else budget - PROMPT_SPECIAL_TOKENS

        def complete(prompts):
            if not prompts:
                return []
            sampling = Sampling(max_new_tokens=max_new, batch_size=options.batch_size,
                                stop_token_ids=tuple(prompts[0].stop_ids), seed=options.seed)
            middles = generator.generate([p.prompt_ids for p in prompts], sampling,
                                         progress=options.progress, desc="infill exact match")
            return [samples[0] for samples in middles]

        matches = exact_match(complete, tasks_by_kind, formats, tokenizer.encode, ids, budget)
        for fmt in formats:
            for kind, r in matches[fmt].items():
                out[fmt][kind]["exact_match"] = r["exact_match"]
    return out


def summarize(tasks: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, flat: ppl/<domain>/{loss,bpb}, humaneval/pass@k, infill/fmt/kind."""
    summary: dict[str, Any] = {}
    for domain, r in (tasks.get("perplexity") or {}).items():
        if isinstance(r, dict) and "loss" in r:
            summary[f"ppl/{domain}/loss"] = r["loss"]
            summary[f"ppl/{domain}/bpb"] = r["bits_per_byte"]
    he = tasks.get("humaneval") or {}
    if "greedy" in he:
        summary["humaneval/greedy/pass@1"] = he["greedy"]["pass@k"].get("1")
    for k, v in he.get("sampled", {}).get("pass@k", {}).items():
        summary[f"humaneval/sampled/pass@{k}"] = v
    harness = sum(he.get(name, {}).get("harness_errors", 0) for name in ("greedy", "sampled"))
    for fmt, r in (tasks.get("infill") or {}).items():
        if isinstance(r, dict) and "skipped" not in r and fmt != "num_tasks":
            for kind, s in r.items():
                summary[f"infill/{fmt}/{kind}/pass@1"] = s["pass@1"]
                harness += s.get("harness_errors", 0)
    for fmt, r in (tasks.get("infill_loss") or {}).items():
        if isinstance(r, dict) and "skipped" not in r and fmt not in ("num_tasks",):
            for kind, s in r.items():
                if not s["num_tasks"]:
                    continue
                summary[f"infill_loss/{fmt}/{kind}/loss"] = s["loss"]
                summary[f"infill_loss/{fmt}/{kind}/bpb"] = s["bits_per_byte"]
                if "exact_match" in s:
                    summary[f"infill_loss/{fmt}/{kind}/exact_match"] = s["exact_match"]
    if he or tasks.get("infill"):
        summary["sandbox_harness_errors"] = harness  # > 0: verdicts lost to the sandbox itself
    return summary


def evaluate_checkpoint(path: str | Path, options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """Run the chosen tasks on one checkpoint; returns the results dict (see module doc)."""
    t_start, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    from megatron_rrtf.convert.ct2 import ct2_metadata, is_ct2_dir

    resolved = resolve_checkpoint(path)
    ct2 = is_ct2_dir(resolved.hf_dir)
    tasks: dict[str, Any] = {}
    times: dict[str, float] = {}
    if "perplexity" in options.tasks:
        t0 = time.time()
        if ct2:
            tasks["perplexity"] = {"skipped": "runs our megatron model, not the CTranslate2 "
                                              "weights: evaluate the checkpoint for perplexity"}
        elif resolved.step_dir is None:
            tasks["perplexity"] = {"skipped": "needs our training checkpoint (its config.yaml "
                                              "names the held-out data); this HF dir is not one"}
        else:
            from megatron_rrtf.config import load_config
            from megatron_rrtf.eval.perplexity import heldout_perplexity

            tasks["perplexity"] = heldout_perplexity(
                load_config(resolved.step_dir / "config.yaml"), resolved.step_dir,
                options.ppl_samples)
        times["perplexity"] = time.time() - t0
    generator = None
    if {"humaneval", "infill"} & set(options.tasks) or (
            "infill_loss" in options.tasks and options.infill_exact_match):
        from megatron_rrtf.generation.generator import Generator

        generator = Generator.load(resolved.hf_dir, device=options.device)
    if {"humaneval", "infill"} & set(options.tasks):
        from megatron_rrtf.eval.humaneval import load_problems

        problems = load_problems()
        if options.limit is not None:
            problems = dict(list(problems.items())[: options.limit])
        for name, fn in (("humaneval", run_humaneval), ("infill", run_infill)):
            if name in options.tasks:
                t0 = time.time()
                tasks[name] = fn(generator, problems, options)
                times[name] = time.time() - t0
    if "infill_loss" in options.tasks:
        t0 = time.time()
        if resolved.step_dir is None:
            tasks["infill_loss"] = {"skipped": "needs our training checkpoint (its config.yaml "
                                               "names the held-out data); this HF dir is not one"}
        else:
            tasks["infill_loss"] = run_infill_loss(resolved.step_dir, generator, options)
        times["infill_loss"] = time.time() - t0
    return {
        "checkpoint": str(Path(path).resolve()),
        "step_dir": str(resolved.step_dir.resolve()) if resolved.step_dir else None,
        "hf_dir": str(resolved.hf_dir.resolve()),
        "backend": "ctranslate2" if ct2 else "transformers",
        **({"ct2_quantization": ct2_metadata(resolved.hf_dir).get("quantization")}
           if ct2 else {}),
        "step": resolved.step,
        "consumed_tokens": resolved.consumed_tokens,
        "config": resolved.config,
        "options": dataclasses.asdict(options),
        "started_at": started,
        "task_wall_time_s": times,
        "wall_time_s": time.time() - t_start,
        "summary": summarize(tasks),
        "tasks": tasks,
    }


def write_results(results: dict[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return out
