"""A Hugging Face model directory -> a CTranslate2 model directory, through CTranslate2's own
`TransformersConverter` (the optional extra `ct2`), for quantized serving and evaluation.

The output holds what CTranslate2 writes (model.bin, config.json, vocabulary.json), the HF
tokenizer files (so `generation.Generator` prompts, stops and decodes exactly as on the HF
model), our mrrtf_export.json when the source is our export (the step it came from), and
`mrrtf_ct2.json`: the quantization, the source directory and the model's position limit, which
CTranslate2's config does not record.

CTranslate2's GPTBigCode loader does not copy the norm epsilon into its config.json (null); it
is filled from the HF config (`layer_norm_epsilon`, Llama's `rms_norm_eps`), as are bos/unk
tokens that an older export left null (they become the eos token, as StarCoder declares them).
Written to a temporary sibling and renamed into place, so a crash leaves no half directory.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from megatron_rrtf.errors import ExportError
from megatron_rrtf.publish_dir import publish_dir
from megatron_rrtf.tokenizer.hf_tokenizer import HF_TOKENIZER_FILES

log = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
                 "bfloat16", "float32")
"""CTranslate2 weight types (`--quantization`); float16/bfloat16 kinds compute on a GPU only."""
CT2_MARKER = "mrrtf_ct2.json"
COPIED = (*HF_TOKENIZER_FILES, "generation_config.json", "mrrtf_export.json")
EPSILON_KEYS = ("layer_norm_epsilon", "rms_norm_eps")
"""The norm epsilon under the name each HF class uses (GPTBigCode, Llama)."""


def import_ctranslate2():
    """The ctranslate2 module, or an ExportError naming the extra that installs it."""
    try:
        import ctranslate2
    except ImportError:
        raise ExportError("CTranslate2 is not installed: pip install 'megatron-rrtf[ct2]' "
                          "(ctranslate2==4.8.5)") from None
    return ctranslate2


def is_ct2_dir(path: str | Path) -> bool:
    """True when `path` holds a CTranslate2 model (model.bin beside config.json)."""
    path = Path(path)
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def max_positions(hf_config: dict[str, Any]) -> int | None:
    for key in ("n_positions", "max_position_embeddings"):
        if hf_config.get(key):
            return int(hf_config[key])
    return None


def _fill_ct2_config(out: Path, hf_config: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields CTranslate2's loaders left null; returns the filled config."""
    path = out / "config.json"
    config = json.loads(path.read_text())
    if config.get("layer_norm_epsilon") is None:
        eps = next((hf_config[k] for k in EPSILON_KEYS if hf_config.get(k) is not None), None)
        if eps is not None:
            config["layer_norm_epsilon"] = eps
    eos = config.get("eos_token")
    if eos is None:
        raise ExportError(f"{out}: the tokenizer declares no eos_token; generation needs one "
                          "(re-export the model with `mrrtf export`)")
    for key in ("bos_token", "unk_token"):
        if not config.get(key):
            config[key] = eos
    path.write_text(json.dumps(config, indent=2) + "\n")
    return config


def convert_to_ct2(hf_dir: str | Path, out_dir: str | Path, quantization: str | None = None
                   ) -> Path:
    """Convert the HF model at `hf_dir` to a CTranslate2 model at `out_dir` (replaced if it
    exists). quantization: one of QUANTIZATIONS, or None to keep the checkpoint's dtype."""
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization {quantization} is not one of "
                          f"{', '.join(QUANTIZATIONS)}")
    if not (hf_dir / "config.json").is_file():
        raise ExportError(f"{hf_dir} is not a Hugging Face model directory (no config.json)")
    import_ctranslate2()
    from ctranslate2.converters import TransformersConverter

    hf_config = json.loads((hf_dir / "config.json").read_text())
    copy = [name for name in COPIED if (hf_dir / name).is_file()]
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    TransformersConverter(str(hf_dir), copy_files=copy).convert(
        str(tmp), quantization=quantization, force=True)
    _fill_ct2_config(tmp, hf_config)
    (tmp / CT2_MARKER).write_text(json.dumps(
        {"format": "ctranslate2", "quantization": quantization or "none",
         "source": str(hf_dir.resolve()), "architecture": (hf_config.get("architectures")
                                                            or [None])[0],
         "max_positions": max_positions(hf_config)}, indent=1) + "\n")
    publish_dir(tmp, out_dir)
    log.info("converted %s -> %s (CTranslate2, quantization %s)", hf_dir, out_dir,
             quantization or "none")
    return out_dir


def ct2_metadata(path: str | Path) -> dict[str, Any]:
    """Our mrrtf_ct2.json of a CTranslate2 dir ({} for one converted by other means)."""
    marker = Path(path) / CT2_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}
