"""The ranking study: does ranking add to SFT when the student's samples pass sometimes?

In the one-round demo (align/demo.py) the student never passes a test, so RRTF ≈ SFT-only by
construction. Here, per seed, under <out>/seed_<s>/:
  data/                      the demo problems and teacher file (align.demo.write_demo_data)
  round1/                    RRTF from the pretrained model for StudySettings.round1_steps
                             (align.rounds.run_rounds): the warm student
  round2/responses.jsonl     samples of the warm student (round2_samples per problem at
                             round2_temperature) + the teacher file; round2/ranked.jsonl: ranked
                             once, shared by the arms
  arms/<arm>/round_1/        rrtf (rrtf.loss=rrtf), rrhf (rrtf.loss=rrhf), sft (rrtf.loss=rrtf,
                             rrtf.rank_weight=0), sft_rrhf (rrtf.loss=rrhf, rrtf.rank_weight=0):
                             each trained from round 1's model on a copy of round2/ranked.jsonl
                             for round2_steps steps (run_rounds, which finds the ranked file and
                             does not sample)
  eval_*.json                held-out pass@1 (greedy) of round 1's model and of each arm
  study.json                 the seed's record: pass@1 per column, the round-2 pair counts
                             (align.study_report.pair_counts), each arm's recorded init_from,
                             steps, loss and ranked file hash
<out>/report.md gathers the seeds (align.study_report.study_report).

Resumable at every level: a finished seed's study.json is read back; trained rounds and arms
are skipped (run_rounds), sampling resumes by chunk, ranking and evaluations whose files exist
are not redone. study_meta.json, written when a seed starts, holds its settings: a rerun with
other settings is refused (it would otherwise continue or mix runs of different sizes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.demo import DemoData, demo_config, write_demo_data
from align.study_report import ARMS, pair_counts, study_report
from megatron_rrtf.config import RunConfig, load_config
from megatron_rrtf.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

ARM_OVERRIDES = {"rrtf": ("rrtf.loss=rrtf",), "rrhf": ("rrtf.loss=rrhf",),
                 "sft": ("rrtf.loss=rrtf", "rrtf.rank_weight=0"),
                 "sft_rrhf": ("rrtf.loss=rrhf", "rrtf.rank_weight=0")}
"""What differs between the arms (align.study_report.ARMS); everything else (start, data,
steps, seed) is shared. Each ranking loss has its own SFT-only control, because the two losses'
CE terms differ (RRTF: summed token NLL of the best teacher answer; RRHF: mean token NLL of the
best response), so "RRHF vs SFT-only" alone would mix the ranking term with the CE's form."""
PASS_KEY = "heldout/pass@1 (greedy)"
DEMO_DATA = DemoData()
"""The demo's problem family, as `mrrtf rrtf demo` uses it."""


@dataclass(frozen=True)
class StudySettings:
    """Sizes of the study (the CLI's flags take their defaults here). Defaults are sized for
    ~10 min per seed on 2 idle cores: round 1 stops inside the demo's learning transition
    (configs/rrtf/tiny_demo.yaml: ~10% held-out at 300 steps, ~90% at 600), so the warm
    student's samples pass sometimes and the arms have room to differ."""

    round1_steps: int = 300
    """RRTF steps from the pretrained model (the warm student)."""
    round2_steps: int = 300
    """Steps of each arm (the same for all)."""
    round2_samples: int = 4
    """Student samples per training problem in round 2."""
    round2_temperature: float = 0.8
    """Sampling temperature of the round-2 student."""
    arms: tuple[str, ...] = ARMS
    """The arms to train (each round2_steps steps from the same start)."""

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARM_OVERRIDES]
        if unknown or not self.arms:
            raise ConfigError(f"ranking study: arms {list(self.arms)}: choose one or more of "
                              f"{', '.join(ARM_OVERRIDES)}")
        if min(self.round1_steps, self.round2_steps, self.round2_samples) < 1:
            raise ConfigError(f"ranking study: round1_steps={self.round1_steps}, round2_steps="
                              f"{self.round2_steps} and round2_samples={self.round2_samples} "
                              "must all be >= 1")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def study_overrides(settings: StudySettings, arm: str | None = None,
                    start: Path | None = None) -> list[str]:
    """Round 2's overrides of the demo config: the student's samples and temperature and, for
    an arm, its loss, round2_steps steps, one round, from `start` (round 1's model)."""
    out = [f"rrtf.student.samples={settings.round2_samples}",
           f"rrtf.student.temperatures=[{settings.round2_temperature}]"]
    if arm is None:
        return out
    if arm not in ARM_OVERRIDES:
        raise ConfigError(f"unknown study arm {arm!r}; choose from {', '.join(ARM_OVERRIDES)}")
    return [*out, *ARM_OVERRIDES[arm], f"train.train_steps={settings.round2_steps}",
            "rrtf.rounds=1", f"checkpoint.init_from={start}"]


def _cached_eval(path: Path, model: Path, evaluate) -> float:
    """Held-out pass@1 of `model`, read back from `path` when it was taken for the same model."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("model") == str(model):
            return saved["metrics"][PASS_KEY]
    metrics = evaluate(model)
    path.write_text(json.dumps({"model": str(model), "metrics": metrics}, indent=1) + "\n")
    return metrics[PASS_KEY]


def _sample_and_rank(cfg: RunConfig, student: Path, problems, out: Path, seed: int) -> Path:
    """round2/ranked.jsonl: the warm student's samples + the teacher file, ranked once."""
    from align.rank import verdict_runner
    from align.rounds import rank_to_file, round_seed
    from align.sample import model_sampler, sample_to_file
    from megatron_rrtf.convert.export_cache import hf_model_dir
    from megatron_rrtf.generation.backends import check_engine

    ranked = out / "ranked.jsonl"
    if ranked.is_file():
        return ranked
    rr = cfg.rrtf
    check_engine(rr.sample)
    student_dir = hf_model_dir(student)
    responses = out / "responses.jsonl"
    sample_to_file(responses, problems, rr, model_sampler(student_dir, rr.student, rr),
                   seed=round_seed(seed, 2), chunk_size=rr.sample_chunk,
                   student_model=student_dir)
    rank_to_file(problems, responses, ranked, rr.stop_markers, verdict_runner(rr))
    return ranked


def _finished(result: dict[str, Any], what: str) -> Path:
    """The final model of a run_rounds result whose training completed; else a clear error (a
    stopped round's "final" would be its start, and the study would compare the wrong model)."""
    train = result["rounds"][-1]["train"]
    if train["status"] != "completed":
        raise CheckpointError(f"{what} stopped at step {train.get('step')} ({train['status']}, "
                              f"{result['rounds'][-1]['dir']}); re-run the same command to "
                              "resume from its checkpoint")
    return Path(result["final"])


def _recorded_arm(arm_dir: Path) -> dict[str, Any]:
    """What the arm's training run recorded: its resolved config and the ranked file it read."""
    rd = arm_dir / "round_1"
    cfg = load_config(rd / "config.yaml")
    return {"init_from": cfg.checkpoint.init_from, "train_steps": cfg.train.train_steps,
            "loss": cfg.rrtf.loss, "rank_weight": cfg.rrtf.rank_weight,
            "step": json.loads((rd / "summary.json").read_text())["step"],
            "ranked_sha256": file_sha256(rd / "ranked.jsonl")}


def run_study_seed(pretrained: str | Path, out: str | Path, seed: int,
                   settings: StudySettings = StudySettings(), data: DemoData = DEMO_DATA,
                   overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One seed of the study (see the module docstring); returns and writes its record."""
    from align.evaluate import HeldoutEval, evaluate_model
    from align.rounds import run_rounds
    from megatron_rrtf.rrtf.problems import load_problems

    t0 = time.time()
    pretrained, out = Path(pretrained), Path(out) / f"seed_{seed}"
    meta = json.loads(json.dumps({  # as it reads back from JSON (tuples become lists)
        "settings": dataclasses.asdict(settings), "data": dataclasses.asdict(data),
        "overrides": list(overrides), "pretrained": str(pretrained)}))
    record_path, meta_path = out / "study.json", out / "study_meta.json"
    if meta_path.is_file():
        before = json.loads(meta_path.read_text())
        if before != meta:
            raise ConfigError(f"{meta_path}: seed {seed} was started with other settings "
                              f"({before}); give another --out, or delete {out} to redo it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    if record_path.is_file():
        log.info("seed %d: finished before (%s), read back", seed, record_path)
        return json.loads(record_path.read_text())

    files = write_demo_data(out / "data", seed, data)
    heldout, _ = load_problems(files["heldout"])
    train_problems, _ = load_problems(files["train"])
    round1_cfg = demo_config(pretrained, out / "round1", files, seed, overrides=[
        *overrides, f"train.train_steps={settings.round1_steps}", "rrtf.rounds=1"])

    def evaluate(model: Path) -> dict[str, float]:
        return evaluate_model(model, heldout, round1_cfg.rrtf, HeldoutEval(seed=seed), None)

    start = _finished(run_rounds(round1_cfg), f"round 1 of seed {seed}")
    pass1 = {"start": _cached_eval(out / "eval_start.json", start, evaluate)}
    log.info("seed %d: round 1 model %s, held-out pass@1 %.3f", seed, start, pass1["start"])

    base = demo_config(pretrained, out / "round2", files, seed,
                       overrides=[*overrides, *study_overrides(settings)])
    ranked = _sample_and_rank(base, start, train_problems, out / "round2", seed)
    counts = pair_counts(json.loads(line) for line in ranked.read_text().splitlines())
    log.info("seed %d: round-2 student pass share %.3f, %d student-above pairs, %d ties", seed,
             counts["student_pass_share"], counts["student_above_other"],
             counts["student_ties_teacher"])

    arms: dict[str, dict[str, Any]] = {}
    for arm in settings.arms:
        arm_dir = out / "arms" / arm
        dst = arm_dir / "round_1" / "ranked.jsonl"
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ranked, dst)
        model = _finished(run_rounds(demo_config(pretrained, arm_dir, files, seed, overrides=[
            *overrides, *study_overrides(settings, arm, start)])), f"arm {arm} of seed {seed}")
        pass1[arm] = _cached_eval(out / f"eval_{arm}.json", model, evaluate)
        arms[arm] = _recorded_arm(arm_dir)
        log.info("seed %d: arm %s held-out pass@1 %.3f", seed, arm, pass1[arm])

    record = {"seed": seed, "meta": meta, "pass@1": pass1, "round2": counts, "arms": arms,
              "ranked_sha256": file_sha256(ranked), "start_model": str(start),
              "seconds": time.time() - t0}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def run_study(pretrained: str | Path, out: str | Path, seeds: Sequence[int],
              settings: StudySettings = StudySettings(), data: DemoData = DEMO_DATA,
              overrides: Sequence[str] = ()) -> tuple[list[dict[str, Any]], Path]:
    """Every seed (finished ones read back), then <out>/report.md; returns (records, report)."""
    records = [run_study_seed(pretrained, out, s, settings, data, overrides) for s in seeds]
    report = Path(out) / "report.md"
    report.write_text(study_report(records))
    (Path(out) / "study.json").write_text(json.dumps(records, indent=1) + "\n")
    return records, report
