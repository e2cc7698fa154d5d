"""`mrrtf tokenizer train`: train our sentencepiece BPE tokenizer from text files."""

from __future__ import annotations

import argparse

HELP = "train a sentencepiece BPE tokenizer (byte fallback, special tokens) from text files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train from --input files, write PREFIX.model")
    train.add_argument("--input", nargs="+", required=True, metavar="FILE",
                       help="UTF-8 text files, one document each")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--out", required=True, metavar="PREFIX",
                       help="writes PREFIX.model and PREFIX.vocab")
    train.add_argument("--max-input-bytes", type=int, default=None,
                       help="use at most this many bytes of input (default: all)")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.tokenizer.train import train_tokenizer

    path = train_tokenizer(args.input, args.vocab_size, args.out, args.max_input_bytes)
    print(path)
    return 0
