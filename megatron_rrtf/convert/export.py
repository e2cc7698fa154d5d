"""A training checkpoint -> a Hugging Face model directory that `AutoModelForCausalLM` and
`AutoTokenizer` load with no custom code.

Reads STEP/config.yaml (the run's resolved config) and STEP/model (dist_checkpointing, any TP/PP
layout), builds a TP=1/PP=1 model in this one process (megatron reshards on load), maps its state
dict with the family's converter and writes config.json, generation_config.json,
model.safetensors and the tokenizer files. The HF vocabulary is the real one
(model.vocab_size, else the tokenizer's size, as pretraining uses); megatron's padding rows are
dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import torch

from megatron_rrtf.checkpoint.manager import resolve_step_dir
from megatron_rrtf.checkpoint.model_io import load_model
from megatron_rrtf.config import ParallelConfig, RunConfig, load_config
from megatron_rrtf.convert import families
from megatron_rrtf.convert.hf_tokenizer import export_tokenizer, fill_special_tokens
from megatron_rrtf.errors import CheckpointError, ExportError
from megatron_rrtf.tokenizer.hf_tokenizer import HF_TOKENIZER_FILES
from megatron_rrtf.tokenizer.loader import load_tokenizer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_step_config(step_dir: Path) -> RunConfig:
    path = step_dir / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{step_dir} has no config.yaml (the run's resolved config); "
                              "export needs it to rebuild the model")
    return load_config(path)


def load_megatron_state(config: RunConfig, step_dir: Path, padded_vocab: int,
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """The checkpoint's weights as a TP=1/PP=1 megatron state dict on CPU (this process only)."""
    from megatron_rrtf.model.build import build_gpt_model
    from megatron_rrtf.parallel.init import process_groups

    single = dataclasses.replace(config, parallel=ParallelConfig())
    with process_groups(single.parallel, seed):
        model = build_gpt_model(single, padded_vocab)
        load_model(model, step_dir)
        return {k: v.detach().cpu() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def _hf_token_ids(tokenizer_path: Path, tokenizer) -> tuple[int | None, int | None, int | None]:
    """(bos, eos, pad) for the exported model's config and generation config; our sentencepiece
    model declares EOD as bos (as StarCoder does), never adding it (hf_tokenizer)."""
    if tokenizer_path.is_dir():
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
        eos = hf.eos_token_id if hf.eos_token_id is not None else tokenizer.eod
        pad = hf.pad_token_id if hf.pad_token_id is not None else eos
        return hf.bos_token_id, eos, pad
    return tokenizer.eod, tokenizer.eod, tokenizer.pad


def write_tokenizer(tokenizer_path: Path, out_dir: Path, model_max_length: int) -> None:
    """Our .model -> tokenizer.json + tokenizer_config.json; an HF directory is copied, with
    a null bos/unk filled (fill_special_tokens)."""
    if tokenizer_path.is_dir():
        for name in HF_TOKENIZER_FILES:
            if (tokenizer_path / name).is_file():
                shutil.copy2(tokenizer_path / name, out_dir / name)
        fill_special_tokens(out_dir / "tokenizer_config.json")
    else:
        export_tokenizer(tokenizer_path, out_dir, model_max_length=model_max_length)


def check_keys_against_hf(hf_config, state: dict[str, torch.Tensor], ignored: list[str]) -> None:
    """Every weight the HF class has is written with its shape (built on the meta device)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in
                    AutoModelForCausalLM.from_config(hf_config).state_dict().items()
                    if not any(re.fullmatch(p, k) for p in ignored)}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise ExportError(f"mapped weights do not fit {type(hf_config).__name__}: missing "
                          f"{missing[:3]}, unexpected {extra[:3]}, wrong shape {shapes[:3]}")


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, dtype: str | None = None,
                      ) -> Path:
    """Write the HF model directory `out_dir` for a step dir or run dir (via checkpoints/latest).

    dtype: float32 / bfloat16 / float16, or None to keep the checkpoint's. Returns out_dir."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    step_dir = resolve_step_dir(checkpoint)
    config = load_step_config(step_dir)
    model = config.model
    converter = families.for_family(model.family)
    converter.check_representable(model)           # refuse before loading any weights
    if dtype is not None and dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype} is not one of {', '.join(DTYPES)}")
    if not config.data.tokenizer:
        raise ExportError(f"{step_dir}/config.yaml has no data.tokenizer: the exported model "
                          "needs the tokenizer it was trained with")
    tokenizer_path = Path(config.data.tokenizer)
    tokenizer = load_tokenizer(tokenizer_path)
    vocab = model.real_vocab_size(tokenizer.vocab_size)
    if tokenizer.vocab_size > vocab:
        raise ExportError(f"tokenizer {tokenizer_path} has {tokenizer.vocab_size} ids, more than "
                          f"model.vocab_size={vocab}")
    bos, eos, pad = _hf_token_ids(tokenizer_path, tokenizer)
    hf_config = converter.hf_config(model, vocab, bos, eos, pad)

    state = load_megatron_state(config, step_dir, model.padded_vocab_size(vocab),
                                config.train.seed)
    hf_state = converter.to_hf(state, model, vocab)
    check_keys_against_hf(hf_config, hf_state, converter.ignored_hf(model))
    if dtype is not None:
        hf_state = {k: v.to(DTYPES[dtype]) for k, v in hf_state.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_config.dtype = next(iter(hf_state.values())).dtype
    hf_config.save_pretrained(str(out_dir))
    GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad).save_pretrained(
        str(out_dir))
    save_file({k: v.contiguous() for k, v in hf_state.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    write_tokenizer(tokenizer_path, out_dir, model.seq_length)
    (out_dir / "mrrtf_export.json").write_text(json.dumps(
        {"checkpoint": str(step_dir.resolve()), "family": model.family,
         "architecture": converter.ARCHITECTURE, "vocab_size": vocab,
         "padded_vocab_size": model.padded_vocab_size(vocab)}, indent=1) + "\n")
    log.info("exported %s -> %s (%s, vocab %d)", step_dir, out_dir, converter.ARCHITECTURE, vocab)
    return out_dir
