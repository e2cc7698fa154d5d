"""`mrrtf export --format`: one checkpoint -> a served model directory in one of three formats.

- hf:   the Hugging Face directory (`convert.export.export_checkpoint`);
- ct2:  a CTranslate2 directory, optionally quantized (`convert.ct2`, extra `ct2`);
- gptq: a GPTQ 4/8-bit directory (`convert.gptq`, extra `gptq`, CUDA only).

The source is our run or step directory, or (for ct2 and gptq) a Hugging Face model directory,
such as an earlier `mrrtf export`. Ours goes through a temporary HF export beside `out_dir`,
removed afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from megatron_rrtf.convert.shards import DEFAULT_MAX_SHARD_SIZE
from megatron_rrtf.errors import ExportError

FORMATS = ("hf", "ct2", "gptq")


def export_model(checkpoint: str | Path, out_dir: str | Path, fmt: str = "hf",
                 dtype: str | None = None, quantization: str | None = None,
                 bits: int = 4, max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """Write `out_dir` in format `fmt` (see module doc); returns it. max_shard_size: the largest
    safetensors file of an hf export (convert.shards)."""
    from megatron_rrtf.convert.export import export_checkpoint

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
    if quantization is not None and fmt != "ct2":
        raise ExportError(f"--quantization applies to --format ct2 (got --format {fmt}); "
                          "use --dtype for hf and --bits for gptq")
    if fmt == "gptq":
        from megatron_rrtf.convert.gptq import check_gptq_available

        check_gptq_available(bits)  # refuse before exporting anything
    if fmt == "ct2":
        from megatron_rrtf.convert.ct2 import import_ctranslate2

        import_ctranslate2()
    source, out_dir = Path(checkpoint), Path(out_dir)
    if fmt == "hf":
        return export_checkpoint(source, out_dir, dtype=dtype, max_shard_size=max_shard_size)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.hf.") as tmp:
        if (source / "model.bin").is_file():
            raise ExportError(f"{source} already is a CTranslate2 model directory; export from "
                              "the checkpoint or the Hugging Face directory it came from")
        if (source / "config.json").is_file():
            if dtype is not None:
                raise ExportError(f"--dtype needs our checkpoint; {source} already is a Hugging "
                                  "Face model directory (use --quantization for ct2)")
            hf_dir = source
        else:
            hf_dir = export_checkpoint(source, Path(tmp) / "hf", dtype=dtype)
        if fmt == "ct2":
            from megatron_rrtf.convert.ct2 import convert_to_ct2

            return convert_to_ct2(hf_dir, out_dir, quantization)
        from megatron_rrtf.convert.gptq import quantize_gptq

        return quantize_gptq(hf_dir, out_dir, bits)
