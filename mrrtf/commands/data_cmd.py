"""`mrrtf data inspect`: per-source token counts, effective epochs and a few decoded samples."""

from __future__ import annotations

import argparse

from mrrtf.commands.config_cmd import add_config_arguments

HELP = "inspect preprocessed data: per-source tokens, effective epochs, decoded samples"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = sub.add_parser("inspect", help="print counts, effective epochs and samples")
    add_config_arguments(inspect)
    inspect.add_argument("--samples", type=int, default=3, help="decoded samples to show")
    inspect.add_argument("--chars", type=int, default=400, help="characters shown per sample")
    inspect.add_argument("--num-samples", type=int, default=None,
                         help="global training samples (default train_steps x global_batch_size)")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.data.manifest import read_manifest
    from megatron_rrtf.data.preprocess import tokenizer_path
    from megatron_rrtf.data.stream import build_eval_streams, build_train_stream
    from megatron_rrtf.tokenizer import load_tokenizer
    from mrrtf.commands.config_cmd import load_config_arguments

    config = load_config_arguments(args)
    tokenizer = load_tokenizer(tokenizer_path(config.data))
    manifest = read_manifest(config.data.output_dir)
    num_samples = args.num_samples or config.train.train_steps * config.train.global_batch_size
    stream = build_train_stream(config, tokenizer, 0, 1, num_samples)
    print(f"tokenizer {tokenizer.path} (vocab {tokenizer.vocab_size}); seq_length "
          f"{config.model.seq_length}; {num_samples:,} training samples")
    print(f"{'source':<20} {'domain':<12} {'docs':>7} {'train tok':>11} {'heldout tok':>11} "
          f"{'samples/ep':>10} {'weight':>6} {'epochs':>7}  skipped")
    for split, source in zip(stream.splits, config.data.sources):
        entry = manifest["sources"][source.name]
        skipped = {k: v for k, v in entry["skipped"].items() if v}
        print(f"{source.name:<20} {source.eval_domain:<12} {entry['docs_written']:>7,} "
              f"{entry['splits']['train']['tokens']:>11,} {entry['splits']['heldout']['tokens']:>11,} "
              f"{split.samples_per_epoch:>10,} {source.weight:>6.2f} "
              f"{stream.effective_epochs[source.name]:>7.3f}  {skipped or '-'}")
    for domain, eval_stream in build_eval_streams(config, tokenizer, 0, 1).items():
        print(f"held-out {domain}: {len(eval_stream):,} samples")
    for i in range(args.samples):
        tokens, source_id, epoch = stream.sample(i)
        text = tokenizer.decode(tokens.tolist())
        print(f"\n--- sample {i} (source {stream.source_names[source_id]}, epoch {epoch}) ---")
        print(text[:args.chars])
    return 0
