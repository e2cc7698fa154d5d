"""Loss curves of one or several runs (per objective, per eval domain) from their metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

from megatron_rrtf.jsonl import read_jsonl


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


def plot_runs(run_dirs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """Write train_loss.png (overall + per objective) and eval_loss.png (per domain)."""
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
                       lambda key: key)]
    eval_keys = sorted({k for recs in runs.values() for r in recs if r.get("kind") == "eval"
                        for k in r if k.startswith("eval/")})
    if eval_keys:
        written.append(_panels(
            plt, runs, "eval", eval_keys, out / "eval_loss.png", "step",
            lambda key: key.removeprefix("eval/").removesuffix("/loss") + " held-out loss"))
    return written


def _panels(plt, runs: dict[str, list[dict]], kind: str, keys: list[str], path: Path,
            xlabel: str, title) -> Path:
    """One panel per metric key, one line per run."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, recs in runs.items():
            xs, ys = _series(recs, kind, key)
            if xs:
                ax.plot(xs, ys, label=name, linewidth=1, marker="o" if kind == "eval" else None)
        ax.set_title(title(key))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
