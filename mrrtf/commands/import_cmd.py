"""`mrrtf import HF_DIR OUT_DIR`: a local GPTBigCode/Llama Hugging Face model -> our checkpoint."""

from __future__ import annotations

import argparse

HELP = "import a local Hugging Face GPTBigCode or Llama model as an mrrtf checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hf_dir", help="Hugging Face model directory (config.json, weights, tokenizer)")
    p.add_argument("out_dir", help="new directory: checkpoints/step_00000000, checkpoints/latest, "
                                   "tokenizer/")
    p.add_argument("--keep-tokenizer", action="store_true",
                   help="do not add our special tokens the tokenizer lacks (default: add them, "
                        "mapping StarCoder's own FIM/end-of-text names, and grow the embedding "
                        "and output rows at the mean of the old rows)")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.convert.import_hf import import_checkpoint

    step = import_checkpoint(args.hf_dir, args.out_dir, extend_tokens=not args.keep_tokenizer)
    print(f"imported to {step}")
    return 0
