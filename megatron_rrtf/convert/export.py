"""A training checkpoint -> a Hugging Face model directory that `AutoModelForCausalLM` and
`AutoTokenizer` load with no custom code.

Reads STEP/config.yaml (the run's resolved config) and streams STEP/model (dist_checkpointing,
any TP/PP layout) group by group -- the embeddings, each transformer layer, the final norm and
output layer (convert.layer_stream) -- through the family's converter into sharded safetensors
(convert.shards: model-0000x-of-0000n.safetensors + model.safetensors.index.json, or one
model.safetensors when it fits in max_shard_size). The whole model never sits in this process:
at most one group and one shard do, so a 15B model exports on a machine with a few GB free.
Also writes config.json, generation_config.json and the tokenizer files. The HF vocabulary is
the real one (model.vocab_size, else the tokenizer's size, as pretraining uses); megatron's
padding rows are dropped.
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
from megatron_rrtf.config import ModelConfig, ParallelConfig, RunConfig, load_config
from megatron_rrtf.convert import families
from megatron_rrtf.convert.hf_tokenizer import export_tokenizer, fill_special_tokens
from megatron_rrtf.convert.layer_stream import stream_megatron_groups
from megatron_rrtf.convert.shards import (
    DEFAULT_MAX_SHARD_SIZE,
    ShardPlan,
    ShardWriter,
    parse_size,
    plan_shards,
)
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


def hf_weight_shapes(hf_config, ignored: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    """Every weight the HF class has, in its state-dict order (embeddings, layers, head), with
    its shape: built on the meta device, so any size costs nothing."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        state = AutoModelForCausalLM.from_config(hf_config).state_dict()
    return [(k, tuple(v.shape)) for k, v in state.items()
            if not any(re.fullmatch(p, k) for p in ignored)]


def shard_plan(model: ModelConfig, hf_config, dtype: torch.dtype,
               max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE) -> ShardPlan:
    """The files an export of `model` (as `hf_config`, in `dtype`) is written to."""
    converter = families.for_family(model.family)
    return plan_shards(hf_weight_shapes(hf_config, converter.ignored_hf(model)), dtype,
                       parse_size(max_shard_size))


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, dtype: str | None = None,
                      max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """Write the HF model directory `out_dir` for a step dir or run dir (via checkpoints/latest).

    dtype: float32 / bfloat16 / float16, or None to keep the checkpoint's. max_shard_size: bytes
    or '5GB'-style (decimal, as transformers) per safetensors file. Returns out_dir."""
    from transformers import GenerationConfig

    from megatron_rrtf.parallel.init import process_groups

    step_dir = resolve_step_dir(checkpoint)
    config = load_step_config(step_dir)
    model = config.model
    converter = families.for_family(model.family)
    converter.check_representable(model)           # refuse before loading any weights
    if dtype is not None and dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype} is not one of {', '.join(DTYPES)}")
    parse_size(max_shard_size)
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    single = dataclasses.replace(config, parallel=ParallelConfig())
    with process_groups(single.parallel, config.train.seed):
        writer = None
        for _, state in stream_megatron_groups(single, step_dir, model.padded_vocab_size(vocab)):
            if writer is None:  # the checkpoint's dtype is known once the first group is read
                out_dtype = DTYPES[dtype] if dtype else next(iter(state.values())).dtype
                plan = shard_plan(model, hf_config, out_dtype, max_shard_size)
                writer = ShardWriter(out_dir, plan)
            writer.add(converter.to_hf(state, model, vocab))
            del state                        # hold one group at a time (and the open shard)
        writer.finish()
    hf_config.dtype = out_dtype
    hf_config.save_pretrained(str(out_dir))
    GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad).save_pretrained(
        str(out_dir))
    write_tokenizer(tokenizer_path, out_dir, model.seq_length)
    (out_dir / "mrrtf_export.json").write_text(json.dumps(
        {"checkpoint": str(step_dir.resolve()), "family": model.family,
         "architecture": converter.ARCHITECTURE, "vocab_size": vocab,
         "padded_vocab_size": model.padded_vocab_size(vocab),
         "shards": list(plan.files)}, indent=1) + "\n")
    log.info("exported %s -> %s (%s, vocab %d, %d shard(s))", step_dir, out_dir,
             converter.ARCHITECTURE, vocab, len(plan.files))
    return out_dir
