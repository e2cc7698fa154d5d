"""Loss curves of one or several runs (per objective, per eval domain) from their metrics.jsonl.

Per-step train losses of small batches are too noisy to compare by eye, so each train curve is
drawn as a smoothed line over its faint raw one, as TensorBoard and wandb do: an exponential
moving average, debiased at the start (`ema_smooth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from megatron_rrtf.jsonl import read_jsonl

DEFAULT_SMOOTHING = 0.9
"""EMA weight of the past (TensorBoard's slider; 0: raw). 0.9 averages over ~10 steps."""


def ema_smooth(values: Sequence[float], weight: float = DEFAULT_SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: s_t = w * s_{t-1} + (1 - w) * x_t from s_0 = 0, divided by
    1 - w**(t+1) so the start is not pulled towards 0 (the first value is x_0 itself, and a
    constant series stays constant)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight} must be in [0, 1)")
    out, last = [], 0.0
    for t, value in enumerate(values, 1):
        last = weight * last + (1.0 - weight) * value
        out.append(last / (1.0 - weight ** t))
    return out


def plot_smoothed(ax, xs: Sequence[float], ys: Sequence[float], label: str,
                  smoothing: float = DEFAULT_SMOOTHING, color=None) -> None:
    """The raw curve faint, its EMA on top in the same colour (one legend entry)."""
    if smoothing <= 0:
        ax.plot(xs, ys, label=label, linewidth=1, color=color)
        return
    (raw,) = ax.plot(xs, ys, linewidth=0.8, alpha=0.25, color=color)
    ax.plot(xs, ema_smooth(ys, smoothing), label=label, linewidth=1.4, color=raw.get_color())


def read_run_metrics(run_dir: str | Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl", "metrics file",
                      "pass a run directory written by mrrtf pretrain")


def _series(records: list[dict], kind: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        if r.get("kind") == kind and r.get(key) is not None:
            xs.append(r.get("consumed_tokens", r["step"]) if kind == "train" else r["step"])
            ys.append(r[key])
    return xs, ys


def plot_runs(run_dirs: list[str | Path], out_dir: str | Path,
              smoothing: float = DEFAULT_SMOOTHING) -> list[Path]:
    """Write train_loss.png (overall + per objective; smoothed over the faint raw curve) and
    eval_loss.png (per domain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) < len(names):  # same leaf name: label by the full path instead
        names = [str(d) for d in run_dirs]
    runs = {name: read_run_metrics(d) for name, d in zip(names, run_dirs)}

    train_keys = sorted({k for recs in runs.values() for r in recs if r.get("kind") == "train"
                         for k, v in r.items()
                         if (k == "loss" or k.startswith("loss/")) and v is not None})
    written = [_panels(plt, runs, "train", train_keys, out / "train_loss.png", "tokens",
                       lambda key: key, smoothing)]
    eval_keys = sorted({k for recs in runs.values() for r in recs if r.get("kind") == "eval"
                        for k in r if k.startswith("eval/")})
    if eval_keys:
        written.append(_panels(
            plt, runs, "eval", eval_keys, out / "eval_loss.png", "step",
            lambda key: key.removeprefix("eval/").removesuffix("/loss") + " held-out loss"))
    return written


def _panels(plt, runs: dict[str, list[dict]], kind: str, keys: list[str], path: Path,
            xlabel: str, title, smoothing: float = 0.0) -> Path:
    """One panel per metric key, one line per run (train curves smoothed over the raw ones)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, recs in runs.items():
            xs, ys = _series(recs, kind, key)
            if xs and kind == "train":
                plot_smoothed(ax, xs, ys, name, smoothing)
            elif xs:
                ax.plot(xs, ys, label=name, linewidth=1, marker="o")
        ax.set_title(title(key) + (f" (EMA {smoothing:g} over raw)"
                                   if kind == "train" and smoothing > 0 else ""))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
