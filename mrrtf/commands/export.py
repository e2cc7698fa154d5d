"""`mrrtf export STEP_DIR|RUN_DIR OUT_DIR`: a training checkpoint -> a Hugging Face model dir."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint (step dir, or run dir via checkpoints/latest) as a Hugging Face model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="step dir (holding model/ and config.yaml) or run dir")
    p.add_argument("out_dir", help="output directory for config.json, model.safetensors, tokenizer")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="cast the weights (default: keep the checkpoint's dtype)")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.convert.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out_dir, dtype=args.dtype)
    print(f"exported to {out}")
    return 0
