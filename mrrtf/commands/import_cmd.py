"""`mrrtf import HF_DIR OUT_DIR`: a local GPTBigCode/Llama Hugging Face model -> our checkpoint."""

from __future__ import annotations

import argparse

HELP = "import a local Hugging Face GPTBigCode or Llama model as an mrrtf checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hf_dir", help="Hugging Face model directory (config.json, weights, tokenizer)")
    p.add_argument("out_dir", help="new directory: checkpoints/step_00000000, checkpoints/latest, "
                                   "tokenizer/")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.convert.import_hf import import_checkpoint

    step = import_checkpoint(args.hf_dir, args.out_dir)
    print(f"imported to {step}")
    return 0
