"""Claim: the datatrove preprocessing pipeline (read + ingest checks + tokenize + indexed
write per task + merge + manifest) runs at >= 0.8x per worker the token rate of raw
sentencepiece `encode` (one thread) on the same text, scales >= 1.7x from 1 to 2 workers, and
the blended loader serves samples far faster than a tiny-model step consumes them.

    python benchmarks/bench_preprocess.py [--code-bytes 6000000] [--workers 1 2] [--repeats 3]

Uses the built-in corpus (stdlib code) and trains a tokenizer on it first. Ours is the wall
time of the whole `preprocess` call (executor start-up included); the baseline is
sentencepiece's `encode(list_of_texts, num_threads=1)` in the same run, interleaved with ours;
medians over --repeats, each run listed.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-bytes", type=int, default=6_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", type=int, default=None, help="default: = workers")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seq-length", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import megatron.core.datasets.indexed_dataset  # noqa: F401  (import cost is not throughput)
    import sentencepiece as spm

    from megatron_rrtf.config import load_config
    from megatron_rrtf.data.builtin_corpus import materialize_builtin_corpus
    from megatron_rrtf.data.preprocess import preprocess
    from megatron_rrtf.data.stream import build_train_stream
    from megatron_rrtf.tokenizer import load_tokenizer, train_tokenizer_from_texts

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = materialize_builtin_corpus(root / "corpus", code_bytes=args.code_bytes)
        files = sorted((corpus / "code" / "python").rglob("*.py"))
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
        model = train_tokenizer_from_texts(texts[:200], args.vocab_size, root / "tok")
        tokenizer = load_tokenizer(model)

        sp = spm.SentencePieceProcessor(model_file=str(model))
        rates: dict[int, list[float]] = {w: [] for w in args.workers}
        baselines: list[float] = []
        for repeat in range(args.repeats):  # interleaved: the machine is shared
            start = time.perf_counter()
            baseline_tokens = sum(len(ids) for ids in sp.encode(texts, num_threads=1))
            baselines.append(baseline_tokens / (time.perf_counter() - start))
            for workers in args.workers:
                config = load_config([], [
                    f"data.tokenizer={model}", f"data.output_dir={root / f'out{repeat}_{workers}'}",
                    f"data.workers={workers}", f"data.tasks={args.tasks or workers}",
                    "data.ingest.max_line_length=100000", "data.ingest.dedup=false",
                    "data.heldout_fraction=0.0", f"model.seq_length={args.seq_length}",
                    f"data.sources=[{{name: code, domain: code, "
                    f"dir: '{corpus / 'code' / 'python'}', glob: '**/*.py'}}]"])
                start = time.perf_counter()
                manifest = preprocess(config, tokenizer, progress=False)
                seconds = time.perf_counter() - start
                entry = manifest["sources"]["code"]
                ours_tokens = entry["tokens"] - entry["docs_written"]
                rates[workers].append(ours_tokens / seconds)
        base = statistics.median(baselines)
        print(f"corpus: {len(texts)} files, {sum(map(len, texts)) / 1e6:.1f} M chars, "
              f"{baseline_tokens:,} tokens (ours wrote {ours_tokens:,} + one EOD per document)")
        print(f"baseline sentencepiece encode, 1 thread: median {base:,.0f} tokens/s "
              f"(runs {', '.join(f'{r:,.0f}' for r in baselines)})")
        for workers in args.workers:
            med = statistics.median(rates[workers])
            print(f"preprocess tokens/s per worker ({workers} workers, whole pipeline vs "
                  f"{workers} x 1-thread encode): ours {med / workers:,.0f}, baseline {base:,.0f}, "
                  f"ratio {med / workers / base:.2f} (runs "
                  f"{', '.join(f'{r / workers:,.0f}' for r in rates[workers])})")
        if len(args.workers) == 2:
            one, two = (statistics.median(rates[w]) for w in args.workers)
            print(f"scaling {args.workers[0]} -> {args.workers[1]} workers: ours {two:,.0f}, "
                  f"baseline {one:,.0f}, ratio {two / one:.2f}")

        stream = build_train_stream(config, tokenizer, 0, 1, 100_000)
        stream.next_batch(args.micro_batch)  # builds the first epoch index
        start = time.perf_counter()
        steps = 500
        for _ in range(steps):
            stream.next_batch(args.micro_batch)
        loader = steps * args.micro_batch / (time.perf_counter() - start)
        needed = args.micro_batch / 0.05  # one micro-batch per 50 ms tiny-model step
        print(f"loader samples/s (seq {args.seq_length}, micro-batch {args.micro_batch}): "
              f"ours {loader:,.0f}, baseline {needed:,.0f} (one batch per 50 ms step), "
              f"ratio {loader / needed:.0f}")


if __name__ == "__main__":
    main()
