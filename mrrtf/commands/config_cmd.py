"""`mrrtf config`: print the resolved, validated config (YAML files + overrides) and model size."""

from __future__ import annotations

import argparse

HELP = "validate config files + key=value overrides and print the resolved config"


def add_config_arguments(p: argparse.ArgumentParser, note: str = "") -> None:
    """The CONFIG... positional of every config-driven verb: YAML paths first, then `a.b=value`
    overrides."""
    p.add_argument("configs", nargs="+", metavar="CONFIG",
                   help="YAML files (merged in order) then key.sub=value overrides"
                        + (f" ({note})" if note else ""))


def load_config_arguments(args: argparse.Namespace):
    """The validated RunConfig that `add_config_arguments`' CONFIG... names."""
    from megatron_rrtf.config import load_config

    paths = [i for i in args.configs if "=" not in i]
    overrides = [i for i in args.configs if "=" in i]
    return load_config(paths, overrides)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    import yaml

    config = load_config_arguments(args)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    vocab = config.model.vocab_size
    if vocab is not None:
        padded = config.model.padded_vocab_size(vocab)
        print(f"# parameters: {config.model.num_parameters(padded):,} (padded vocab {padded})")
    return 0
