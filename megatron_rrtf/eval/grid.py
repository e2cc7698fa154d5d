"""The objective-comparison grid: which runs (axis x setting x seed), and running them resumably.

Axes (the questions a lab asks before it spends GPU months; CodeGen2's lessons):

- `objectives`: the objective mixture, on the configured data (code + NL): causal; causal +
  span corruption (CodeGen2's mix); causal + FIM; causal + prefix-LM; all four at equal rates.
- `data`: causal LM on code only vs on code + NL at the configured weights, with the code + NL
  run trained for steps / code share, so both see the same number of code tokens.
- `epochs`: causal LM on code only, one pass over a sub-corpus vs four passes over a quarter of
  it (data.sources[i].train_fraction), equal steps and so equal tokens; the sub-corpus is sized
  so that the run's tokens are one pass over it. Sub-corpora are whole documents, so on a corpus
  of few large documents the passes made differ from those planned: the report shows both.

Every setting runs over `seeds` seeds: seed k sets train.seed (model init, objective draws) and
data.seed (data order) to base + k. Run k of setting s of axis a lives in OUT/runs/a/s/seed<k>.

Resuming: a run's `record.json` (what the report reads: its spec, train and eval summaries, the
train loss curve) is written last, with a fingerprint of everything that made it; a rerun with
the same fingerprint skips the run. `trained.json` marks a finished training (its own
fingerprint), so a run whose evaluation options changed is evaluated again, not retrained.

The train and eval steps are functions handed in (the `mrrtf compare-demo` command passes
pretraining and `mrrtf eval`), so the grid logic is tested with fakes; with `jobs > 1` runs go to
that many worker processes (spawned), each with `threads` torch threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from megatron_rrtf.atomic_file import write_atomic
from megatron_rrtf.errors import ConfigError

log = logging.getLogger(__name__)

AXES = ("objectives", "data", "epochs")
OBJECTIVE_SETTINGS = {  # setting -> objective mixture config (under the project's configs/)
    "causal": "objectives/causal.yaml",
    "causal+span": "objectives/codegen2_mix.yaml",
    "causal+fim": "objectives/causal_fim.yaml",
    "causal+prefix_lm": "objectives/causal_prefix_lm.yaml",
    "all4": "objectives/all_four.yaml",
}
CAUSAL = "objectives/causal.yaml"
EPOCHS_REPEAT = 4


@dataclass(frozen=True)
class Setting:
    """One cell of an axis: an objective config and the overrides that make it differ."""

    axis: str
    name: str
    objective: str
    """Objective mixture config, relative to the project's configs/."""
    overrides: tuple[str, ...] = ()
    steps: int = 0
    describe: str = ""


@dataclass(frozen=True)
class RunSpec:
    setting: Setting
    seed: int
    """Seed index k: train.seed = data.seed = base + k."""

    @property
    def key(self) -> str:
        return f"{self.setting.axis}/{self.setting.name}/seed{self.seed}"


@dataclass(frozen=True)
class DataFacts:
    """What the data and epochs axes need to know of the corpus."""

    sources: list[dict[str, Any]]
    """The configured sources as plain dicts (name, domain, weight, ...)."""
    code_train_tokens: int
    """Training tokens of the code sources (manifest)."""
    tokens_per_step: int
    """global_batch_size x seq_length."""


def _sources_override(sources: Sequence[Mapping[str, Any]], weights: Mapping[str, float],
                      fractions: Mapping[str, float] | None = None) -> str:
    fractions = fractions or {}
    value = [{**{k: v for k, v in s.items() if v is not None}, "weight": weights[s["name"]],
              "train_fraction": fractions.get(s["name"], s.get("train_fraction", 1.0))}
             for s in sources]
    return "data.sources=" + json.dumps(value)


def axis_settings(axis: str, steps: int, data: DataFacts | None = None) -> list[Setting]:
    """The settings of one axis, the first being the baseline the others are compared with."""
    if axis == "objectives":
        return [Setting(axis, name, cfg, (), steps, f"{name} ({cfg})")
                for name, cfg in OBJECTIVE_SETTINGS.items()]
    if data is None:
        raise ValueError(f"the {axis} axis needs DataFacts")
    code = [s for s in data.sources if s["domain"] == "code" and s["weight"] > 0]
    other = [s for s in data.sources if s["domain"] != "code" and s["weight"] > 0]
    if not code:
        raise ConfigError(f"--grid {axis} needs a code source with weight > 0 in data.sources")
    if axis == "data" and not other:
        raise ConfigError("--grid data needs an nl source with weight > 0 beside the code in "
                          "data.sources (it compares code only with code + NL)")
    code_only = {s["name"]: (s["weight"] if s["domain"] == "code" else 0.0)
                 for s in data.sources}
    if axis == "data":
        mixed = {s["name"]: s["weight"] for s in data.sources}
        share = sum(code_only.values()) / sum(mixed.values())
        mixed_steps = max(1, round(steps / share))
        return [Setting(axis, "code", CAUSAL, (_sources_override(data.sources, code_only),),
                        steps, f"causal LM on code only, {steps} steps"),
                Setting(axis, "code+nl", CAUSAL, (_sources_override(data.sources, mixed),),
                        mixed_steps, f"causal LM on code + NL ({share:.0%} code), {mixed_steps} "
                        "steps: the same code tokens")]
    if axis == "epochs":
        if data.code_train_tokens < 1:
            raise ConfigError("--grid epochs: the code sources have no training tokens")
        one_pass = min(1.0, steps * data.tokens_per_step / data.code_train_tokens)
        settings = []
        for name, repeat in (("1pass", 1), (f"{EPOCHS_REPEAT}passes", EPOCHS_REPEAT)):
            fraction = one_pass / repeat
            fractions = {s["name"]: fraction for s in code}
            passes = steps * data.tokens_per_step / (fraction * data.code_train_tokens)
            settings.append(Setting(
                axis, name, CAUSAL, (_sources_override(data.sources, code_only, fractions),),
                steps, f"causal LM on {fraction:.2%} of the code tokens (whole documents), "
                       f"planned ~{passes:.1f} passes in {steps} steps"))
        return settings
    raise ConfigError(f"--grid {axis}: choose from {', '.join(AXES)}, all")


def grid_specs(axes: Sequence[str], steps: int, seeds: int,
               data: DataFacts | None = None) -> list[RunSpec]:
    """Every run, seed-major (all settings' seed 0 first), so a grid cut short still has every
    setting at some seeds."""
    if seeds < 1 or steps < 1:
        raise ConfigError(f"need --seeds >= 1 and --steps >= 1 (got {seeds}, {steps})")
    settings = [s for axis in axes for s in axis_settings(axis, steps, data)]
    return [RunSpec(s, k) for k in range(seeds) for s in settings]


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


TrainFn = Callable[[RunSpec, Path], Mapping[str, Any]]
"""Train (or resume) the run into its directory; returns a summary ({"status", ...})."""
EvalFn = Callable[[RunSpec, Path], Mapping[str, Any] | None]
"""Evaluate the trained run; returns `mrrtf eval`'s results dict (None: not evaluated)."""


@dataclass
class GridJob:
    """Everything a worker needs to finish one run (picklable)."""

    spec: RunSpec
    run_dir: Path
    train_fn: TrainFn
    eval_fn: EvalFn | None
    train_key: str
    eval_key: str | None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(value, indent=1) + "\n")  # a killed grid leaves no half record


def train_curve(run_dir: Path) -> list[list[float]]:
    """[[consumed tokens, train loss], ...] from the run's metrics.jsonl (empty if none)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    curve = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("kind") == "train" and r.get("loss") is not None:
            curve.append([r.get("consumed_tokens", r.get("step")), r["loss"]])
    return curve


def record_path(run_dir: Path) -> Path:
    return run_dir / "record.json"


def is_done(job: GridJob) -> bool:
    record = _read_json(record_path(job.run_dir))
    return bool(record) and record.get("fingerprint") == fingerprint([job.train_key,
                                                                       job.eval_key])


def execute(job: GridJob) -> dict[str, Any]:
    """Train (unless trained.json says so), evaluate, write record.json; skip all if done."""
    run_dir, spec = job.run_dir, job.spec
    whole = fingerprint([job.train_key, job.eval_key])
    record = _read_json(record_path(run_dir))
    if record and record.get("fingerprint") == whole:
        return {**record, "skipped": True}
    trained = _read_json(run_dir / "trained.json")
    if not trained or trained.get("fingerprint") != fingerprint(job.train_key):
        summary = dict(job.train_fn(spec, run_dir))
        trained = {"fingerprint": fingerprint(job.train_key), "summary": summary}
        _write_json(run_dir / "trained.json", trained)
    results = job.eval_fn(spec, run_dir) if job.eval_fn is not None else None
    record = {
        "fingerprint": whole, "key": spec.key, "axis": spec.setting.axis,
        "setting": spec.setting.name, "seed": spec.seed, "steps": spec.setting.steps,
        "describe": spec.setting.describe, "setting_spec": asdict(spec.setting),
        "train": trained["summary"], "curve": train_curve(run_dir),
        "eval": None if results is None else {
            "summary": results.get("summary", {}), "wall_time_s": results.get("wall_time_s"),
            "step": results.get("step")},
    }
    _write_json(record_path(run_dir), record)
    return {**record, "skipped": False}


def _init_worker(threads: int) -> None:
    """`threads` torch threads in this process: through the environment when torch is not
    imported yet (a fresh worker; torch reads it at import), else directly."""
    import sys

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def _threads_here(threads: int) -> Iterator[None]:
    """`_init_worker` in this process for the block, then the thread settings as they were."""
    import sys

    env = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    _init_worker(threads)
    try:
        yield
    finally:
        for var, value in env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if before is not None:
            torch.set_num_threads(before)


def default_jobs(threads_per_run: int = 1, cpus: int | None = None) -> int:
    """As many parallel runs as the CPU count allows at `threads_per_run` threads each."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(threads_per_run, 1))


def run_grid(jobs_: Sequence[GridJob], jobs: int = 1, threads: int = 1,
             progress: bool = True) -> list[dict[str, Any]]:
    """Execute every job (finished ones are skipped), `jobs` at a time; records in job order.
    A progress bar counts runs."""
    from tqdm import tqdm

    if jobs < 1 or threads < 1:
        raise ConfigError(f"need --jobs >= 1 and threads >= 1 (got {jobs}, {threads})")
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for i, job in enumerate(jobs_):
        if is_done(job):
            records[i] = execute(job)  # reads the record back; trains and evaluates nothing
        else:
            todo.append(i)
    bar = tqdm(total=len(jobs_), initial=len(records), desc="grid runs", unit="run",
               disable=not progress)
    try:
        if jobs == 1 or len(todo) <= 1:
            with _threads_here(threads):
                for i in todo:
                    bar.set_postfix_str(jobs_[i].spec.key)
                    records[i] = execute(jobs_[i])
                    bar.update()
        else:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=min(jobs, len(todo)),
                                     mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker, initargs=(threads,)) as pool:
                futures = {pool.submit(execute, jobs_[i]): i for i in todo}
                for future in as_completed(futures):
                    records[futures[future]] = future.result()
                    bar.set_postfix_str(jobs_[futures[future]].spec.key)
                    bar.update()
    finally:
        bar.close()
    return [records[i] for i in range(len(jobs_))]
