"""RRTF rounds: export the student -> sample -> rank -> train, rrtf.rounds times.

Layout (one run directory per round, so each round is an ordinary training run with its own
config.yaml, metrics.jsonl, checkpoints/ and summary.json):

  <logging.run_dir>/
    round_1/responses.jsonl    student + teacher responses (+ .progress: resumable sampling)
    round_1/ranked.jsonl       sandbox verdicts, ranked per problem
    round_1/checkpoints/ ...   training from checkpoint.init_from for train.train_steps steps
    round_2/...                the same, starting from round_1's checkpoint
    rounds.json                per round: outcome distribution, student pass rate, train summary

The student a round samples from is the HF export of its starting checkpoint, through the one
export cache (convert.export_cache: INIT_RUN/eval/hf_step_X, shared with `mrrtf eval` and
`mrrtf rrtf eval`). Sampling seeds derive from train.seed and the round.

Every round trains train.train_steps steps with a fresh optimizer and schedule (warm-up + decay
per round), as PanGu-Coder2's offline sampling implies: each round is a new data set.

Multi-process rounds: sampling and ranking run in this one process; a round's training needs
parallel.tensor_parallel x parallel.pipeline_parallel x rrtf.train_data_parallel processes.
One runs here, as before; more run as a torchrun job on this node (launch.torchrun:
`mrrtf rrtf train round_N/config.yaml --ranked round_N/ranked.jsonl`, log in round_N/train.log),
whose rank 0 writes round_N/summary.json as any training run does. `mrrtf rrtf run` itself is
started as one process, never under torchrun.

Resumable: a step whose output exists is not redone. A round whose training finished
(summary.json `completed` at train_steps) is skipped whole; the export cache keeps the export of
each save; sampling resumes chunk by chunk (align.sample; chunks sampled beforehand by
`mrrtf rrtf sample --shard i/n --out round_<r>/responses.jsonl` on other machines count); the
ranked file is written to a temporary name and renamed; training resumes from its own latest
checkpoint (checkpoint.load=auto) or starts from the previous round.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from align.rank import RunMany
from megatron_rrtf.config import RunConfig
from megatron_rrtf.errors import ConfigError, LaunchError
from megatron_rrtf.sandbox import run_many

log = logging.getLogger(__name__)

StudentFactory = Callable[[Path], Any]
"""HF model directory -> a Sampler (default: align.sample.model_sampler with rrtf.student)."""


def round_dir(config: RunConfig, r: int) -> Path:
    return Path(config.logging.run_dir) / f"round_{r}"


def round_config(config: RunConfig, r: int, init_from: str | Path) -> RunConfig:
    """Round r's training config: its own run dir, starting from init_from's weights."""
    return dataclasses.replace(
        config,
        logging=dataclasses.replace(config.logging, run_dir=str(round_dir(config, r))),
        checkpoint=dataclasses.replace(config.checkpoint, init_from=str(init_from), load="auto"))


def round_seed(train_seed: int, r: int) -> int:
    """The sampling seed of round r (also `mrrtf rrtf sample --round r`)."""
    return train_seed * 1000 + r


def training_done(run_dir: Path, steps: int) -> bool:
    summary = run_dir / "summary.json"
    if not summary.is_file():
        return False
    s = json.loads(summary.read_text())
    return s.get("status") == "completed" and s.get("step", 0) >= steps


def round_processes(config: RunConfig) -> int:
    """Processes a round's training runs on: TP x PP x rrtf.train_data_parallel."""
    p = config.parallel
    return p.tensor_parallel * p.pipeline_parallel * config.rrtf.train_data_parallel


def train_round(config: RunConfig, ranked: Path) -> dict[str, Any]:
    """Round training (config = round_config(...)): in this process, or as a torchrun job when
    it needs several processes; returns the run's summary."""
    from align.train import run_rrtf_train
    from megatron_rrtf.launch.torchrun import log_tail, run_torchrun

    nproc = round_processes(config)
    if nproc == 1:
        return run_rrtf_train(config, ranked)
    run_dir = Path(config.logging.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"     # the run rewrites it, unchanged, at its start
    config_path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    summary = run_dir / "summary.json"
    summary.unlink(missing_ok=True)           # an interrupted attempt's; this job writes its own
    log_path = run_dir / "train.log"
    code = run_torchrun(nproc, ["rrtf", "train", str(config_path), "--ranked", str(ranked)],
                        log_path)
    if not summary.is_file():
        raise LaunchError(f"round training in {run_dir} ({nproc} processes under torchrun) "
                          f"ended with exit code {code} and no summary.json; its log "
                          f"{log_path} ends with:\n{log_tail(log_path)}")
    return json.loads(summary.read_text())


def rank_to_file(problems, responses_path: Path, out: Path, stop_markers: Sequence[str],
                 run_many: RunMany = run_many) -> dict:
    """Rank (align.rank) into `out` atomically; returns the outcome distribution."""
    from align.rank import rank_problems, read_responses, write_ranked

    tmp = out.with_name(out.name + ".tmp")
    dist = write_ranked(tmp, rank_problems(problems, stop_markers,
                                           read_responses([responses_path]), run_many))
    os.replace(tmp, out)
    return dist


def _distribution(ranked_path: Path) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for line in ranked_path.read_text().splitlines():
        for resp in json.loads(line)["responses"]:
            row = counts.setdefault(resp["source"], {"total": 0})
            row[resp["category"]] = row.get(resp["category"], 0) + 1
            row["total"] += 1
    return counts


def run_rounds(config: RunConfig, problems_path: str | Path | None = None,
               student_factory: StudentFactory | None = None, run_many: RunMany | None = None,
               sample_chunk: int | None = None) -> dict[str, Any]:
    """Run (or resume) every round; returns the rounds summary also written to rounds.json.
    run_many: default, rrtf.executor's (align.rank.verdict_runner); sample_chunk: default,
    rrtf.sample_chunk."""
    from align.rank import verdict_runner
    from align.sample import model_sampler, sample_to_file
    from megatron_rrtf.convert.export_cache import hf_model_dir
    from megatron_rrtf.generation.backends import check_engine
    from megatron_rrtf.rrtf.problems import load_problems

    rr = config.rrtf
    problems_path = problems_path or rr.problems
    if not problems_path:
        raise ConfigError("rrtf.problems is empty: give the training problems JSONL "
                          "(or --problems)")
    if not config.checkpoint.init_from:
        raise ConfigError("checkpoint.init_from is empty: name the model to align (a pretraining "
                          "run directory or an imported checkpoint)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("start `mrrtf rrtf run` as one process, not under torchrun: it samples "
                          "and ranks here and starts torchrun for each round's training itself "
                          "(parallel.* x rrtf.train_data_parallel processes)")
    problems, _ = load_problems(problems_path)
    if student_factory is None and (rr.student.samples or any(t.kind == "hf_model"
                                                                for t in rr.teachers)):
        check_engine(rr.sample)
    factory = student_factory or (lambda d: model_sampler(d, rr.student, rr))
    run_many = run_many or verdict_runner(rr)
    root = Path(config.logging.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    summary_path = root / "rounds.json"
    rounds: list[dict[str, Any]] = []
    previous: str | Path = config.checkpoint.init_from
    for r in range(1, rr.rounds + 1):
        rd = round_dir(config, r)
        cfg_r = round_config(config, r, previous)
        info: dict[str, Any] = {"round": r, "dir": str(rd), "init_from": str(previous)}
        if training_done(rd, config.train.train_steps):
            log.info("round %d: already trained (%s), skipped", r, rd / "summary.json")
            info["train"] = json.loads((rd / "summary.json").read_text())
        else:
            responses, ranked = rd / "responses.jsonl", rd / "ranked.jsonl"
            if not ranked.is_file():
                student, student_dir = None, None
                if rr.student.samples:
                    student_dir = hf_model_dir(previous)
                    student = factory(student_dir)
                n = sample_to_file(responses, problems, rr, student,
                                   seed=round_seed(config.train.seed, r),
                                   chunk_size=sample_chunk or rr.sample_chunk,
                                   student_model=student_dir)
                log.info("round %d: %d responses in %s; ranking", r, n, responses)
                rank_to_file(problems, responses, ranked, rr.stop_markers, run_many)
            log.info("round %d: training %s from %s", r, rd, previous)
            info["train"] = train_round(cfg_r, ranked)
        info["outcomes"] = _distribution(rd / "ranked.jsonl") \
            if (rd / "ranked.jsonl").is_file() else {}
        student_row = info["outcomes"].get("student")
        if student_row:
            info["student_pass_rate"] = student_row.get("passed", 0) / student_row["total"]
        rounds.append(info)
        summary_path.write_text(json.dumps({"rounds": rounds}, indent=1) + "\n")
        if info["train"]["status"] != "completed":
            log.warning("round %d stopped (%s); re-run the same command to resume", r,
                        info["train"]["status"])
            break
        previous = rd
    return {"rounds": rounds, "final": str(previous), "summary": str(summary_path)}
