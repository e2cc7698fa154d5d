"""`mrrtf preprocess`: ingest + tokenize every configured source into data.output_dir."""

from __future__ import annotations

import argparse

from mrrtf.commands.config_cmd import add_config_arguments

HELP = ("ingest, dedup, decontaminate and tokenize data.sources into megatron indexed datasets "
        "with one datatrove pipeline (trains the tokenizer first when data.tokenizer is null "
        "and data.train_tokenizer is set)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.data.preprocess import preprocess
    from mrrtf.commands.config_cmd import load_config_arguments

    config = load_config_arguments(args)
    manifest = preprocess(config, progress=not args.no_progress)
    if "submitted" in manifest:
        print(f"queued the pipeline's Slurm jobs (logs under {manifest['submitted']}); the merge "
              f"job writes {config.data.output_dir}/manifest.json")
        return 0
    for name, entry in manifest["sources"].items():
        skipped = {k: v for k, v in entry["skipped"].items() if v}
        print(f"{name}: {entry['docs_written']}/{entry['docs_in']} docs, {entry['tokens']:,} "
              f"tokens (train {entry['splits']['train']['tokens']:,}, held out "
              f"{entry['splits']['heldout']['tokens']:,}); skipped {skipped or 'none'}")
    print(f"wrote {config.data.output_dir}/manifest.json")
    return 0
