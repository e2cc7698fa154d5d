"""Claim: preprocessing memory stays flat as the corpus grows: the peak resident memory of the
driver and of the largest task process at 4x the corpus is within a few percent of 1x (tasks
are cut to a fixed size, so 4x the corpus is 4x the tasks, not bigger ones).

    python benchmarks/bench_preprocess_memory.py [--code-bytes 2000000] [--scale 4]

The corpus is the built-in stdlib code; k-times is k copies of every file, each copy with a
different first line (so exact dedup keeps them; near-dedup, on here with decontamination,
then removes the copies: every stage sees the whole input). Each size runs `preprocess` in a
fresh process; peaks are ru_maxrss of that process and of its largest child (the tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from megatron_rrtf.config import load_config
from megatron_rrtf.data.preprocess import preprocess
manifest = preprocess(load_config([], sys.argv[1:]), progress=False)
print(json.dumps({"driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "task_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "docs_in": sum(e["docs_in"] for e in manifest["sources"].values())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-bytes", type=int, default=2_000_000)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tasks-per-copy", type=int, default=2)
    args = parser.parse_args()

    from megatron_rrtf.data.builtin_corpus import materialize_builtin_corpus
    from megatron_rrtf.tokenizer.train import train_tokenizer_from_texts

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = materialize_builtin_corpus(root / "corpus", code_bytes=args.code_bytes)
        files = sorted((corpus / "code" / "python").rglob("*.py"))
        model = train_tokenizer_from_texts(
            [p.read_text(encoding="utf-8", errors="replace") for p in files[:100]], 2000,
            root / "tok")
        results = {}
        for copies in (1, args.scale):
            src = root / f"x{copies}"
            for c in range(copies):
                for i, path in enumerate(files):
                    out = src / f"copy{c}" / f"{i:05d}.py"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(f"# copy {c}\n".encode() + path.read_bytes())
            overrides = [f"data.tokenizer={model}", f"data.output_dir={root / f'out{copies}'}",
                         "data.workers=2", f"data.tasks={args.tasks_per_copy * copies}",
                         "data.near_dedup.enabled=true", "data.decontaminate.enabled=true",
                         f"data.sources=[{{name: code, domain: code, dir: '{src}', "
                         "glob: '**/*.py'}]"]
            done = subprocess.run([sys.executable, "-c", CHILD, *overrides], capture_output=True,
                                  text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
                                  check=False)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            results[copies] = json.loads(done.stdout.strip().splitlines()[-1])
        one, many = results[1], results[args.scale]
        print(f"corpus 1x: {one['docs_in']} files, {args.scale}x: {many['docs_in']} files "
              f"({args.tasks_per_copy} tasks per copy)")
        for key, label in (("driver_mb", "driver"), ("task_mb", "largest task process")):
            print(f"peak RSS {label} (MB): ours {args.scale}x {many[key]:.0f}, baseline 1x "
                  f"{one[key]:.0f}, ratio {many[key] / one[key]:.2f}")


if __name__ == "__main__":
    main()
