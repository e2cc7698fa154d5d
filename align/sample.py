"""RRTF sampling stage: K responses per problem from the student and from each teacher.

HF-model sources (the student, `kind: hf_model` teachers) are sampled through the one generation
path (`megatron_rrtf.generation`, on rrtf.sample's backend `hf` or `vllm`, device and dtype) at
each configured temperature (samples / len(temperatures) per temperature), cut at
rrtf.stop_markers. `kind: jsonl` teachers contribute up to
`samples` ready-made responses per problem from their file. Output: one response per line,
{"problem_id", "text", "source", "temperature"}, as `align.rank` reads it.

`sample_to_file` is the resumable, shardable form used by `mrrtf rrtf sample` and RRTF rounds:
problems go in fixed chunks of rrtf.sample_chunk, chunk c sampled with its own seeds (from seed,
c and the temperature index) and written whole to `<file>.chunks/chunk_<c>.jsonl` (a
process-unique temporary name, fsync, rename), beside `settings.json` (the run's seed, chunk
size, problem ids, student model directory and a digest of how each source samples:
rrtf.student, rrtf.teachers, prompt template, stop markers, backend; other settings are
refused). Shard i of n (`--shard i/n`, or RANK / WORLD_SIZE, SLURM_PROCID / SLURM_NTASKS)
samples the chunks c with c % n == i; a re-run skips chunks already on disk, so a killed shard
resumes at its first missing chunk. When every chunk is on disk, the chunks are concatenated in
chunk order into `<file>` (atomically): the same records in the same order whatever the number
of shards, and whether or not a run was interrupted. The chunk files stay (the resume state).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from megatron_rrtf.atomic_file import write_atomic
from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.rrtf.problems import Problem, prompts_for

if TYPE_CHECKING:
    from megatron_rrtf.generation.completer import Sampler

log = logging.getLogger(__name__)


def model_sampler(model_dir: str | Path, source: SamplingConfig, cfg: RRTFConfig) -> Sampler:
    """How a local HF model directory answers for one source (the student, an hf_model teacher,
    the model under held-out evaluation): on rrtf.sample's backend, device and dtype, with the
    source's max_new_tokens and top_p, rrtf.stop_markers, rrtf.generation_batch_size. The model
    is loaded once."""
    from megatron_rrtf.generation.backends import load_completer
    from megatron_rrtf.generation.completer import Sampling

    return load_completer(model_dir, cfg.sample).sampler(Sampling(
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
            gen = (teachers or {}).get(t.name) or model_sampler(t.path, t, cfg)
            records += sample_source(problems, prompts, gen, t, f"teacher:{t.name}", seed,
                                     seed_of)
    return records


def chunk_seed(seed: int, chunk: int, temperature_index: int) -> int:
    """The generation seed of one (chunk, temperature): independent of how far a run got and of
    how many shards share the work."""
    return int(np.random.SeedSequence((seed, chunk, temperature_index)).generate_state(1)[0])


@dataclass(frozen=True)
class Shard:
    """This process's share of the chunks: chunk c belongs to shard c % count."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'i/n' (shard i of n, from 0)."""
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ConfigError(f"--shard {text!r}: write it as i/n, e.g. 0/4 (shard 0 of 4)")
        return cls(int(index), int(count))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Shard:
        """RANK/WORLD_SIZE (torchrun) or SLURM_PROCID/SLURM_NTASKS (srun); else 0/1."""
        env = os.environ if env is None else env
        for rank, world in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
            if rank in env and world in env:
                return cls(int(env[rank]), int(env[world]))
        return cls()

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def chunks_dir(path: str | Path) -> Path:
    """Where sample_to_file keeps one file per finished chunk (and settings.json)."""
    return Path(str(path) + ".chunks")


def chunk_path(path: str | Path, chunk: int) -> Path:
    return chunks_dir(path) / f"chunk_{chunk:06d}.jsonl"


def sampling_complete(path: str | Path) -> bool:
    """Did sample_to_file finish writing `path` (every chunk sampled and merged)?"""
    return Path(path).is_file() and (chunks_dir(path) / "settings.json").is_file()


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Record the run's settings in the chunks directory, or refuse chunks sampled otherwise."""
    where = chunks_dir(path) / "settings.json"
    if where.is_file():
        old = json.loads(where.read_text())
        if old != settings:
            raise DataError(f"{path} was sampled with different settings ({where}: {old}, now "
                            f"{settings}); delete {path} and {chunks_dir(path)} to sample "
                            "afresh")
        return
    if path.exists():
        path.unlink()  # written without our chunk records: nothing in it can be trusted
    write_atomic(where, json.dumps(settings, sort_keys=True).encode())


def sample_to_file(path: str | Path, problems: Sequence[Problem], cfg: RRTFConfig,
                   student: Sampler | None, teachers: dict[str, Sampler] | None = None,
                   seed: int = 0, chunk_size: int = 64, shard: Shard = Shard(),
                   student_model: str | Path | None = None) -> int | None:
    """Resumable, shardable sample_all into the JSONL file `path` (see the module docstring).
    student_model: the student's model directory, recorded with the settings so that chunks of
    another student are refused.

    Samples this shard's missing chunks; then, if every chunk of every shard is on disk, merges
    them into `path` in chunk order and returns its number of records. Returns None when other
    shards' chunks are still missing (the last shard to finish writes `path`)."""
    from align.rank import read_responses

    path = Path(path)
    chunks_dir(path).mkdir(parents=True, exist_ok=True)
    ids = hashlib.sha256("\n".join(p.id for p in problems).encode()).hexdigest()[:16]
    how = json.dumps([dataclasses.asdict(cfg.student),
                      [dataclasses.asdict(t) for t in cfg.teachers], cfg.stop_markers,
                      cfg.prompt_template, cfg.quote_instruction, cfg.sample.backend],
                     sort_keys=True)
    _check_settings(path, {"problems": len(problems), "problem_ids": ids, "seed": seed,
                           "sampling": hashlib.sha256(how.encode()).hexdigest()[:16],
                           "chunk_size": chunk_size, "student": student is not None,
                           "student_model": (str(Path(student_model).resolve())
                                             if student_model else None)})
    n_chunks = -(-len(problems) // chunk_size)
    if path.is_file():
        return sum(1 for _ in path.open("rb"))
    todo = [c for c in range(n_chunks) if shard.owns(c) and not chunk_path(path, c).is_file()]
    mine = sum(shard.owns(c) for c in range(n_chunks))
    if todo and len(todo) < mine:
        log.info("shard %s: resuming %s, %d of its %d chunks done", shard, path,
                 mine - len(todo), mine)
    if todo:
        files = {t.name: read_responses([t.path]) for t in cfg.teachers if t.kind == "jsonl"}
        gens = dict(teachers or {})
        for t in cfg.teachers:
            if t.kind != "jsonl" and t.name not in gens:
                gens[t.name] = model_sampler(t.path, t, cfg)
        for c in todo:
            chunk = problems[c * chunk_size:(c + 1) * chunk_size]
            records = sample_all(chunk, cfg, student, gens, seed, files,
                                 seed_of=lambda i, c=c: chunk_seed(seed, c, i))
            write_atomic(chunk_path(path, c),
                          "".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))
            log.info("shard %s: sampled chunk %d of %d (%d records) -> %s", shard, c + 1,
                     n_chunks, len(records), path)
    missing = [c for c in range(n_chunks) if not chunk_path(path, c).is_file()]
    if missing:
        log.info("shard %s done; %d chunks of other shards missing (first: %d): the last shard "
                 "to finish writes %s", shard, len(missing), missing[0], path)
        return None
    merged = b"".join(chunk_path(path, c).read_bytes() for c in range(n_chunks))
    write_atomic(path, merged)
    return merged.count(b"\n")
