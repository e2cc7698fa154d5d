"""`mrrtf export STEP_DIR|RUN_DIR OUT_DIR`: a training checkpoint -> a Hugging Face model dir."""

from __future__ import annotations

import argparse

from megatron_rrtf.convert.shards import DEFAULT_MAX_SHARD_SIZE

HELP = "export a checkpoint (step dir, or run dir via checkpoints/latest) as a Hugging Face model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="step dir (holding model/ and config.yaml) or run dir")
    p.add_argument("out_dir", help="output directory for config.json, model*.safetensors, tokenizer")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="cast the weights (default: keep the checkpoint's dtype)")
    p.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE,
                   help="largest safetensors file, in bytes or e.g. 500MB, 2GiB (default "
                        f"{DEFAULT_MAX_SHARD_SIZE}, as transformers); more than one file gets "
                        "model-0000x-of-0000n.safetensors + model.safetensors.index.json")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.convert.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out_dir, dtype=args.dtype,
                            max_shard_size=args.max_shard_size)
    print(f"exported to {out}")
    return 0
