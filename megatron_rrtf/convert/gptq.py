"""A Hugging Face model directory -> a GPTQ 4/8-bit model directory through `gptqmodel` (the
optional extra `gptq`), on a CUDA GPU only.

Calibration text is the built-in corpus's code (the interpreter's standard library, the same on
every machine with the same Python): `calibration_samples` files cut to `calibration_chars`
characters each. The output is what gptqmodel saves (weights, config with its quantization_config,
tokenizer files) plus our mrrtf_export.json when the source is our export.

Untested on the CPU-only machines this project is built on: gptqmodel needs CUDA and is never
installed there; the refusal (no GPU, or no package) is what the tests check.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from megatron_rrtf.errors import ExportError
from megatron_rrtf.publish_dir import publish_dir

log = logging.getLogger(__name__)

GPTQ_BITS = (4, 8)


def check_gptq_available(bits: int) -> None:
    """Refuse, naming the fix, when GPTQ cannot run here: bad bits, no CUDA, no gptqmodel."""
    if bits not in GPTQ_BITS:
        raise ExportError(f"--bits {bits}: GPTQ export takes {' or '.join(map(str, GPTQ_BITS))}")
    import torch

    problems = []
    if not torch.cuda.is_available():
        problems.append("it runs on a CUDA GPU and this machine has none (device: cpu)")
    try:
        import gptqmodel  # noqa: F401
    except ImportError:
        problems.append("gptqmodel is not installed: pip install 'megatron-rrtf[gptq]'")
    if problems:
        raise ExportError(f"--format gptq cannot run: {'; '.join(problems)}. On a CPU use "
                          "--format ct2 --quantization int8 instead")


def calibration_texts(samples: int = 128, chars: int = 2048) -> list[str]:
    """The first `samples` standard-library files, each cut to `chars` characters."""
    from megatron_rrtf.data.builtin_corpus import stdlib_code_files

    texts = []
    for _, path in stdlib_code_files():
        text = path.read_text(encoding="utf-8", errors="replace")[:chars]
        if text.strip():
            texts.append(text)
        if len(texts) == samples:
            break
    return texts


def quantize_gptq(hf_dir: str | Path, out_dir: str | Path, bits: int = 4,
                  group_size: int = 128, calibration_samples: int = 128) -> Path:
    """GPTQ-quantize the HF model at `hf_dir` into `out_dir` (replaced if it exists)."""
    check_gptq_available(bits)
    from gptqmodel import GPTQModel, QuantizeConfig

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = GPTQModel.load(str(hf_dir), QuantizeConfig(bits=bits, group_size=group_size))
    model.quantize(calibration_texts(calibration_samples), batch_size=1)
    model.save(str(tmp))
    if (hf_dir / "mrrtf_export.json").is_file():
        shutil.copy2(hf_dir / "mrrtf_export.json", tmp / "mrrtf_export.json")
    publish_dir(tmp, out_dir)
    log.info("GPTQ %d-bit: %s -> %s", bits, hf_dir, out_dir)
    return out_dir
