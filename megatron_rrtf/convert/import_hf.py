"""A local Hugging Face GPTBigCode / Llama checkpoint -> our checkpoint layout:

    OUT/checkpoints/step_00000000/{model/, config.yaml}   model/ via dist_checkpointing
    OUT/checkpoints/latest                                names the step directory
    OUT/tokenizer/                                        copy of the HF tokenizer files,
                                                          + our special tokens it lacked

The megatron model config comes from the HF config (options we cannot reproduce exactly are
refused by name); model.vocab_size is the HF vocab size, so export gives back the same shapes.
A tokenizer without all of our special tokens (a public StarCoder-family base) gets them
(convert.token_extension): the ones it has under its own names are mapped, the rest added, and
model.vocab_size grows to cover them, the new embedding/output rows at the mean of the old ones;
tokenizer/mrrtf_special_tokens.json records the mapping. `extend_tokens=False` keeps the
tokenizer as it is (plain causal LM needs only an end-of-document token).
The step has no optimizer/meta.json: it holds weights only (an initialisation, not a resumable
training state).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

import yaml

from megatron_rrtf.checkpoint.manager import LATEST, step_dir_name
from megatron_rrtf.checkpoint.model_io import save_model
from megatron_rrtf.config import RunConfig
from megatron_rrtf.config.data import DataConfig
from megatron_rrtf.config.train import LoggingConfig
from megatron_rrtf.convert import families
from megatron_rrtf.convert.token_extension import (
    TokenPlan,
    extend_tokenizer_dir,
    plan_special_tokens,
    set_new_rows,
)
from megatron_rrtf.errors import CheckpointError, ConfigError
from megatron_rrtf.tokenizer.hf_tokenizer import HF_TOKENIZER_FILES
from megatron_rrtf.tokenizer.loader import load_tokenizer

log = logging.getLogger(__name__)


def _extend_tokens(tokenizer_dir: Path) -> TokenPlan:
    """Map/add our special tokens in the copied tokenizer (see convert.token_extension)."""
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    plan = plan_special_tokens(hf_tok.get_vocab(), len(hf_tok), hf_tok.eos_token)
    extend_tokenizer_dir(tokenizer_dir, plan)
    return plan


def import_checkpoint(hf_dir: str | Path, out_dir: str | Path, seed: int = 0,
                      extend_tokens: bool = True) -> Path:
    """Convert `hf_dir` into `out_dir` (see module docstring); returns the step directory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from megatron_rrtf.model.build import build_gpt_model
    from megatron_rrtf.parallel.init import process_groups

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if not (hf_dir / "config.json").is_file():
        raise CheckpointError(f"{hf_dir} is not a Hugging Face model directory (no config.json)")
    if (out_dir / "checkpoints").exists():
        raise CheckpointError(f"{out_dir}/checkpoints already exists; import into a new directory")
    hf_config = AutoConfig.from_pretrained(str(hf_dir), local_files_only=True)
    converter = families.for_hf_config(hf_config)
    model = converter.model_config(hf_config)

    tokenizer_dir = out_dir / "tokenizer"
    names = [n for n in HF_TOKENIZER_FILES if (hf_dir / n).is_file()]
    if not names:
        raise CheckpointError(f"{hf_dir} has no tokenizer files ({', '.join(HF_TOKENIZER_FILES)})")
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(hf_dir / name, tokenizer_dir / name)
    plan = _extend_tokens(tokenizer_dir) if extend_tokens else None
    tokenizer = load_tokenizer(tokenizer_dir)
    old_rows = model.vocab_size
    if plan is not None and plan.new_size > model.vocab_size:
        model = dataclasses.replace(model, vocab_size=plan.new_size)
        model.validate()
    if tokenizer.vocab_size > model.vocab_size:
        raise ConfigError(f"the tokenizer in {hf_dir} has {tokenizer.vocab_size} ids, more than "
                          f"the model's vocab_size={model.vocab_size}")
    config = RunConfig(model=model,
                       data=DataConfig(tokenizer=str(tokenizer_dir.resolve())),
                       logging=LoggingConfig(run_dir=str(out_dir.resolve())))
    config.validate()

    hf_model = AutoModelForCausalLM.from_pretrained(str(hf_dir), local_files_only=True,
                                                    dtype="auto")
    padded = model.padded_vocab_size(model.vocab_size)
    state = converter.from_hf(hf_model.state_dict(), model, padded)
    del hf_model
    if plan is not None and plan.added:
        # the mean of the rows the original tokenizer can produce (not of untrained spare rows)
        mean_of = min(plan.old_size, old_rows)
        for key in converter.EMBEDDING_KEYS:
            if key in state:
                state[key] = set_new_rows(state[key], list(plan.added.values()), mean_of)
    with process_groups(config.parallel, seed):
        megatron = build_gpt_model(config, padded)
        missing, unexpected = megatron.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("._extra_state")]
        if missing or unexpected:
            raise CheckpointError(f"converted weights do not fit the megatron model: missing "
                                  f"{missing[:3]}, unexpected {unexpected[:3]}")
        root = out_dir / "checkpoints"
        final = root / step_dir_name(0)
        tmp = root / f".tmp_{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(megatron, tmp)
    (tmp / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    os.replace(tmp, final)
    (root / LATEST).write_text(final.name + "\n")
    log.info("imported %s (%s) -> %s (vocab %d -> %d)", hf_dir, converter.ARCHITECTURE, final,
             old_rows, model.vocab_size)
    return final

