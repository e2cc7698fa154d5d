"""`mrrtf export CHECKPOINT OUT_DIR [--format hf|ct2|gptq]`: a training checkpoint -> a Hugging
Face model dir, a CTranslate2 dir (optionally quantized) or a GPTQ dir
(megatron_rrtf.convert.formats)."""

from __future__ import annotations

import argparse

from megatron_rrtf.convert.shards import DEFAULT_MAX_SHARD_SIZE

HELP = ("export a checkpoint (step dir, or run dir via checkpoints/latest) as a Hugging Face, "
        "CTranslate2 or GPTQ model")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from megatron_rrtf.convert.ct2 import QUANTIZATIONS
    from megatron_rrtf.convert.formats import FORMATS
    from megatron_rrtf.convert.gptq import GPTQ_BITS

    p.add_argument("checkpoint", help="step dir (holding model/ and config.yaml) or run dir; "
                                      "for ct2/gptq also a Hugging Face model dir")
    p.add_argument("out_dir", help="output directory")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf (default): transformers; ct2: CTranslate2 (extra ct2); gptq: GPTQ "
                        "via gptqmodel (extra gptq, CUDA only)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="cast the weights (default: keep the checkpoint's dtype)")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                   help="ct2 weight type, e.g. int8 (CPU), int8_float16 / float16 (GPU); "
                        "default: the exported dtype")
    p.add_argument("--bits", type=int, choices=GPTQ_BITS, default=4, help="gptq bits")
    p.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE,
                   help="hf: largest safetensors file, in bytes or e.g. 500MB, 2GiB (default "
                        f"{DEFAULT_MAX_SHARD_SIZE}, as transformers); more than one file gets "
                        "model-0000x-of-0000n.safetensors + model.safetensors.index.json")


def run(args: argparse.Namespace) -> int:
    from megatron_rrtf.convert.formats import export_model

    out = export_model(args.checkpoint, args.out_dir, fmt=args.format, dtype=args.dtype,
                       quantization=args.quantization, bits=args.bits,
                       max_shard_size=args.max_shard_size)
    print(f"exported to {out}")
    return 0
