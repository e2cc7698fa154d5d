"""Claim: near-dedup (MinHash LSH over code shingles, the configured bands x rows, candidate
pairs verified by the exact Jaccard of their shingle sets) removes
>= 95% of planted near-duplicates whose Jaccard similarity is above the threshold and <= 1%
of those below it.

    python benchmarks/bench_near_dedup.py [--pairs 400] [--bands 42 --rows 6] [--jaccard 0.7]

Each pair is a random program (60 lines of made-up identifiers) and a copy with some tokens
replaced; the copy's true Jaccard similarity to the original (5-token shingles, the same
split the pipeline uses) is measured, so each pair sits at a known similarity. Both go through
`mrrtf preprocess` with near-dedup on; a pair counts as removed when one of the two is skipped
as near_duplicate. Ours: removal rate above the threshold; baseline: the goal (0.95); and the
same below the threshold against 0.01. Removal per similarity bin is printed too, with the
LSH curve 1 - (1 - s^rows)^bands (before verification) beside it, and the candidate pairs
verified and the time the shingle and verify stages took (datatrove's stats of the run).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from megatron_rrtf.config.data import NearDedupConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    defaults = NearDedupConfig()
    parser.add_argument("--bands", type=int, default=defaults.bands)
    parser.add_argument("--rows", type=int, default=defaults.rows)
    parser.add_argument("--jaccard", type=float, default=defaults.jaccard,
                        help="data.near_dedup.jaccard (verification); the claim's threshold")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from megatron_rrtf.config import load_config
    from megatron_rrtf.data.preprocess import preprocess
    from megatron_rrtf.data.stages.near_dedup import code_shingles
    from megatron_rrtf.tokenizer.train import train_tokenizer_from_texts

    rng = np.random.default_rng(args.seed)
    lsh_threshold = (1 / args.bands) ** (1 / args.rows)
    threshold = args.jaccard
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows, sims = [], []
        for _ in range(args.pairs):
            tokens = [f"v{k}" for k in rng.integers(0, 10**9, size=240)]
            copy = list(tokens)
            changed = rng.integers(1, 25)  # spreads similarity from ~0.3 to ~0.98
            for pos in rng.choice(len(copy), size=changed, replace=False):
                copy[pos] = f"w{rng.integers(0, 10**9)}"

            def text(toks: list[str]) -> str:
                return "".join(f"{a} = {b} + {c}\n" for a, b, c in
                               zip(toks[0::4], toks[1::4], toks[2::4])) + " ".join(toks[3::4])

            a, b = text(tokens), text(copy)
            x, y = code_shingles(a, 5), code_shingles(b, 5)
            sims.append(len(x & y) / len(x | y))
            rows += [{"text": a}, {"text": b}]
        shard = root / "pairs.jsonl"
        shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
        model = train_tokenizer_from_texts([r["text"] for r in rows[:200]], 300, root / "tok")
        config = load_config([], [
            f"data.tokenizer={model}", f"data.output_dir={root / 'out'}", "data.workers=2",
            "data.tasks=4", "data.heldout_fraction=0.0", "data.near_dedup.enabled=true",
            f"data.near_dedup.bands={args.bands}", f"data.near_dedup.rows={args.rows}",
            f"data.near_dedup.jaccard={args.jaccard}",
            f"data.sources=[{{name: pairs, domain: code, files: ['{shard}']}}]"])
        manifest = preprocess(config, progress=False)
        stats = stage_stats(Path(manifest["pipeline"]) / "logs")
        # which documents survived: read the kept set back from the per-document log of skips
        removed = near_duplicate_pairs(config, rows)
    sims_arr, removed_arr = np.array(sims), np.array(removed)
    above, below = sims_arr >= threshold, sims_arr < threshold
    print(f"{args.pairs} planted pairs, LSH {args.bands} bands x {args.rows} rows "
          f"(LSH threshold {lsh_threshold:.3f}), pairs verified at exact Jaccard >= "
          f"{threshold}, similarities {sims_arr.min():.2f}..{sims_arr.max():.2f}")
    for lo, hi in ((0.0, 0.5), (0.5, 0.6), (0.6, 0.65), (0.65, 0.7), (0.7, 0.75), (0.75, 0.8),
                   (0.8, 0.9), (0.9, 1.01)):
        sel = (sims_arr >= lo) & (sims_arr < hi)
        if sel.any():
            s = sims_arr[sel].mean()
            expected = 1 - (1 - s ** args.rows) ** args.bands
            print(f"  Jaccard [{lo:.2f}, {min(hi, 1):.2f}): {sel.sum():4d} pairs, removed "
                  f"{removed_arr[sel].mean():.3f} (LSH curve at mean {s:.2f}: {expected:.3f})")
    print(f"candidate pair rows (all bands; a pair once per band it matched) "
          f"{stats.get('candidate_pairs', 0)}, verified "
          f"{stats.get('verified_pairs', 0)}; documents with saved shingles "
          f"{stats.get('candidate_docs', 0)}; shingle stage {stats.get('near_shingles_s', 0):.2f} "
          f"s, verify stage {stats.get('near_verify_s', 0):.2f} s (summed over tasks)")
    recall = removed_arr[above].mean() if above.any() else float("nan")
    false = removed_arr[below].mean() if below.any() else float("nan")
    print(f"near-dup recall above threshold: ours {recall:.3f}, baseline 0.950, "
          f"ratio {recall / 0.95:.2f}")
    print(f"removed below threshold: ours {false:.3f}, baseline 0.010, ratio {false / 0.01:.2f}")
    away = (sims_arr >= threshold + 0.05) | (sims_arr < threshold - 0.05)
    print(f"away from the threshold (|s - {threshold}| >= 0.05): recall "
          f"{removed_arr[away & above].mean():.3f}, removed below "
          f"{removed_arr[away & below].mean():.3f}")


def stage_stats(logs: Path) -> dict[str, float]:
    """Counters and summed step time of the near_shingles and near_verify stages."""
    out: dict[str, float] = {}
    for stage in ("near_shingles", "near_verify"):
        path = logs / stage / "stats.json"
        if not path.is_file():
            continue
        for step in json.loads(path.read_text()):
            if "verify" not in step["name"] and "shingles" not in step["name"]:
                continue
            timing = step["time_stats"]
            out[f"{stage}_s"] = timing.get("total", 0) if isinstance(timing, dict) else timing
            for key in ("candidate_pairs", "verified_pairs", "candidate_docs"):
                if key in step["stats"]:
                    out[key] = step["stats"][key]["total"]
    return out


def near_duplicate_pairs(config, rows: list[dict]) -> list[bool]:
    """Per pair: was one of its two documents removed? (decoded kept texts vs the inputs)."""
    from megatron_rrtf.data.indexed import open_indexed
    from megatron_rrtf.data.manifest import read_manifest
    from megatron_rrtf.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(config.data.tokenizer)
    entry = read_manifest(config.data.output_dir)["sources"]["pairs"]
    dataset = open_indexed(Path(config.data.output_dir) / "pairs.train", entry["splits"]["train"])
    kept = {tokenizer.decode(dataset[i][:-1].tolist()) for i in range(len(dataset))}
    return [not (rows[2 * i]["text"] in kept and rows[2 * i + 1]["text"] in kept)
            for i in range(len(rows) // 2)]


if __name__ == "__main__":
    main()
