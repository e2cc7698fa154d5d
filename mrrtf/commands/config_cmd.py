"""`mrrtf config`: print the resolved, validated config (YAML files + overrides) and model size."""

from __future__ import annotations

import argparse

HELP = "validate config files + key=value overrides and print the resolved config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configs", nargs="+", help="YAML files (merged in order) then key.sub=value overrides")


def split_configs_and_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """CLI convention shared by every verb: YAML paths first, `a.b=value` overrides after."""
    paths = [i for i in items if "=" not in i]
    overrides = [i for i in items if "=" in i]
    return paths, overrides


def run(args: argparse.Namespace) -> int:
    import yaml

    from megatron_rrtf.config import load_config

    paths, overrides = split_configs_and_overrides(args.configs)
    config = load_config(paths, overrides)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    vocab = config.model.vocab_size
    if vocab is not None:
        padded = config.model.padded_vocab_size(vocab)
        print(f"# parameters: {config.model.num_parameters(padded):,} (padded vocab {padded})")
    return 0
