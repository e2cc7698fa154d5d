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
    written = []

    train_keys = sorted({k for recs in runs.values() for r in recs if r.get("kind") == "train"
                         for k, v in r.items()
                         if (k == "loss" or k.startswith("loss/")) and v is not None})
    fig, axes = plt.subplots(1, len(train_keys), figsize=(4.5 * len(train_keys), 3.6),
                             squeeze=False)
    for ax, key in zip(axes[0], train_keys):
        for name, recs in runs.items():
            xs, ys = _series(recs, "train", key)
            if xs:
                ax.plot(xs, ys, label=name, linewidth=1)
        ax.set_title(key)
        ax.set_xlabel("tokens")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "train_loss.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    eval_keys = sorted({k for recs in runs.values() for r in recs if r.get("kind") == "eval"
                        for k in r if k.startswith("eval/")})
    if eval_keys:
        fig, axes = plt.subplots(1, len(eval_keys), figsize=(4.5 * len(eval_keys), 3.6),
                                 squeeze=False)
        for ax, key in zip(axes[0], eval_keys):
            for name, recs in runs.items():
                xs, ys = _series(recs, "eval", key)
                if xs:
                    ax.plot(xs, ys, marker="o", label=name, linewidth=1)
            ax.set_title(key.removeprefix("eval/").removesuffix("/loss") + " held-out loss")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "eval_loss.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
