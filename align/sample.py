"""RRTF sampling stage: K responses per problem from the student and from each teacher.

HF-model sources (the student, `kind: hf_model` teachers) are sampled with
`megatron_rrtf.eval.generate` at each configured temperature (samples / len(temperatures) per
temperature), cut at the template's stop markers. `kind: jsonl` teachers contribute up to
`samples` ready-made responses per problem from their file. Output: one response per line,
{"problem_id", "text", "source", "temperature"}, as `align.rank` reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.rrtf.batch import rrtf_config_template
from megatron_rrtf.rrtf.problems import Problem

log = logging.getLogger(__name__)

Generate = Callable[[list[str], float, int, int], list[list[str]]]
"""(prompts, temperature, num_samples, seed) -> completions per prompt."""


def hf_generate(model_dir: str, sampling: SamplingConfig, stop: Sequence[str],
                batch_size: int = 16, device: str = "cpu") -> Generate:
    """A Generate over a local HF model directory (loaded once)."""
    from megatron_rrtf.eval.generate import SamplingConfig as GenConfig
    from megatron_rrtf.eval.generate import generate, load_model

    model, tokenizer = load_model(model_dir, device=device)

    def run(prompts: list[str], temperature: float, num_samples: int, seed: int):
        cfg = GenConfig(max_new_tokens=sampling.max_new_tokens, temperature=temperature,
                        top_p=sampling.top_p, num_samples=num_samples, batch_size=batch_size,
                        stop=tuple(stop), seed=seed)
        return generate(prompts, model, tokenizer, cfg)
    return run


def sample_source(problems: Sequence[Problem], prompts: Sequence[str], generate: Generate,
                  sampling: SamplingConfig, source: str, seed: int = 0) -> list[dict[str, Any]]:
    """samples / len(temperatures) completions per temperature for every problem."""
    if sampling.samples == 0:
        return []
    per_t = sampling.samples // len(sampling.temperatures)
    records = []
    for i, temperature in enumerate(sampling.temperatures):
        outs = generate(list(prompts), temperature, per_t, seed + i)
        for problem, texts in zip(problems, outs):
            records += [{"problem_id": problem.id, "text": t, "source": source,
                         "temperature": temperature} for t in texts]
    return records


def jsonl_teacher(problems: Sequence[Problem], teacher: TeacherConfig) -> list[dict[str, Any]]:
    """Up to teacher.samples responses per problem from the teacher's JSONL file."""
    from align.rank import read_responses

    by_id = read_responses([teacher.path])
    records = []
    for p in problems:
        for r in by_id.get(p.id, [])[:teacher.samples]:
            records.append({"problem_id": p.id, "text": r.text,
                            "source": f"teacher:{teacher.name}", "temperature": None})
    return records


def sample_all(problems: Sequence[Problem], cfg: RRTFConfig, student: Generate | None,
               teachers: dict[str, Generate] | None = None, seed: int = 0
               ) -> list[dict[str, Any]]:
    """Student samples (when `student` is given) then each configured teacher's."""
    template = rrtf_config_template(cfg)
    prompts = [template.format(p.instruction) for p in problems]
    records: list[dict[str, Any]] = []
    if student is not None:
        records += sample_source(problems, prompts, student, cfg.student, "student", seed)
    for t in cfg.teachers:
        if t.kind == "jsonl":
            records += jsonl_teacher(problems, t)
        else:
            gen = (teachers or {}).get(t.name) or hf_generate(t.path, t, cfg.stop_markers)
            records += sample_source(problems, prompts, gen, t, f"teacher:{t.name}", seed)
    return records


def write_responses(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
