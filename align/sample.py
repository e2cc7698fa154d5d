"""RRTF sampling stage: K responses per problem from the student and from each teacher.

HF-model sources (the student, `kind: hf_model` teachers) are sampled through the one generation
path (`megatron_rrtf.generation`) at each configured temperature (samples / len(temperatures) per
temperature), cut at rrtf.stop_markers. `kind: jsonl` teachers contribute up to
`samples` ready-made responses per problem from their file. Output: one response per line,
{"problem_id", "text", "source", "temperature"}, as `align.rank` reads it.

`sample_to_file` is the resumable form used by RRTF rounds: problems go in fixed chunks, each
chunk sampled with its own seed (from seed, chunk index, temperature index) and appended to the
responses file; a small `<file>.progress` JSON then records the chunks done and the file's byte
size. A re-run truncates the file to that size (dropping a chunk cut short by a crash, even a
half-written line) and continues with the next chunk, so an interrupted and resumed file equals
an uninterrupted one, record for record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.problems import Problem, prompts_for

if TYPE_CHECKING:
    from megatron_rrtf.generation.generator import Sampler

log = logging.getLogger(__name__)


def hf_sampler(model_dir: str | Path, source: SamplingConfig, cfg: RRTFConfig) -> Sampler:
    """How a local HF model answers for one source (the student, an hf_model teacher, the
    model under held-out evaluation): its max_new_tokens and top_p, rrtf.stop_markers,
    rrtf.generation_batch_size. The model is loaded once."""
    from megatron_rrtf.generation.generator import Generator, Sampling

    return Generator.load(model_dir).sampler(Sampling(
        max_new_tokens=source.max_new_tokens, top_p=source.top_p,
        batch_size=cfg.generation_batch_size, stop=tuple(cfg.stop_markers)))


def sample_source(problems: Sequence[Problem], prompts: Sequence[str], generate: Sampler,
                  sampling: SamplingConfig, source: str, seed: int = 0,
                  seed_of: Callable[[int], int] | None = None) -> list[dict[str, Any]]:
    """samples / len(temperatures) completions per temperature for every problem; the i-th
    temperature uses seed_of(i) (default seed + i)."""
    if sampling.samples == 0:
        return []
    per_t = sampling.samples // len(sampling.temperatures)
    records = []
    for i, temperature in enumerate(sampling.temperatures):
        outs = generate(list(prompts), temperature, per_t, seed_of(i) if seed_of else seed + i)
        for problem, texts in zip(problems, outs):
            records += [{"problem_id": problem.id, "text": t, "source": source,
                         "temperature": temperature} for t in texts]
    return records


def jsonl_teacher(problems: Sequence[Problem], teacher: TeacherConfig,
                  by_id: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Up to teacher.samples responses per problem from the teacher's JSONL file (or from
    `by_id`, the file already read by align.rank.read_responses)."""
    from align.rank import read_responses

    if by_id is None:
        by_id = read_responses([teacher.path])
    records = []
    for p in problems:
        for r in by_id.get(p.id, [])[:teacher.samples]:
            records.append({"problem_id": p.id, "text": r.text,
                            "source": f"teacher:{teacher.name}", "temperature": None})
    return records


def sample_all(problems: Sequence[Problem], cfg: RRTFConfig, student: Sampler | None,
               teachers: dict[str, Sampler] | None = None, seed: int = 0,
               teacher_files: dict[str, dict[str, list[Any]]] | None = None,
               seed_of: Callable[[int], int] | None = None) -> list[dict[str, Any]]:
    """Student samples (when `student` is given) then each configured teacher's.
    teacher_files: jsonl teachers' responses already read, by teacher name."""
    prompts = prompts_for(problems, cfg)
    records: list[dict[str, Any]] = []
    if student is not None:
        records += sample_source(problems, prompts, student, cfg.student, "student", seed,
                                 seed_of)
    for t in cfg.teachers:
        if t.kind == "jsonl":
            records += jsonl_teacher(problems, t, (teacher_files or {}).get(t.name))
        else:
            gen = (teachers or {}).get(t.name) or hf_sampler(t.path, t, cfg)
            records += sample_source(problems, prompts, gen, t, f"teacher:{t.name}", seed,
                                     seed_of)
    return records


def chunk_seed(seed: int, chunk: int, temperature_index: int) -> int:
    """The generation seed of one (chunk, temperature): independent of how far a run got."""
    return int(np.random.SeedSequence((seed, chunk, temperature_index)).generate_state(1)[0])


def progress_path(path: str | Path) -> Path:
    return Path(str(path) + ".progress")


def sampling_complete(path: str | Path) -> bool:
    """Did sample_to_file finish writing `path`?"""
    prog = progress_path(path)
    return Path(path).is_file() and prog.is_file() and json.loads(prog.read_text())["complete"]


def _write_progress(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def sample_to_file(path: str | Path, problems: Sequence[Problem], cfg: RRTFConfig,
                   student: Sampler | None, teachers: dict[str, Sampler] | None = None,
                   seed: int = 0, chunk_size: int = 64) -> int:
    """Resumable sample_all into the JSONL file `path` (see the module docstring); returns the
    number of records in the finished file."""
    from align.rank import read_responses

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prog = progress_path(path)
    identity = {"problems": len(problems), "first": problems[0].id if problems else None,
                "seed": seed, "chunk_size": chunk_size, "student": student is not None}
    state = {"chunks_done": 0, "bytes": 0, "records": 0, "complete": False, **identity}
    if prog.is_file():
        old = json.loads(prog.read_text())
        if {k: old.get(k) for k in identity} != identity:
            raise DataError(f"{path} was sampled with different settings ({prog}: {old}); "
                            f"delete both files to sample afresh")
        state = old
    elif path.exists():
        path.unlink()  # written without progress records: nothing in it can be trusted
    if state["complete"]:
        return state["records"]
    with path.open("ab") as f:
        f.truncate(state["bytes"])  # drop whatever an interrupted chunk left behind
    files = {t.name: read_responses([t.path]) for t in cfg.teachers if t.kind == "jsonl"}
    gens = dict(teachers or {})
    for t in cfg.teachers:
        if t.kind != "jsonl" and t.name not in gens:
            gens[t.name] = hf_sampler(t.path, t, cfg)
    n_chunks = -(-len(problems) // chunk_size)
    if state["chunks_done"]:
        log.info("resuming %s after chunk %d of %d", path, state["chunks_done"], n_chunks)
    for c in range(state["chunks_done"], n_chunks):
        chunk = problems[c * chunk_size:(c + 1) * chunk_size]
        records = sample_all(chunk, cfg, student, gens, seed, files,
                             seed_of=lambda i, c=c: chunk_seed(seed, c, i))
        data = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
        with path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        state.update(chunks_done=c + 1, bytes=state["bytes"] + len(data),
                     records=state["records"] + len(records))
        _write_progress(prog, state)
        log.info("sampled chunk %d/%d (%d records) -> %s", c + 1, n_chunks, len(records), path)
    state["complete"] = True
    _write_progress(prog, state)
    return state["records"]


def write_responses(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
