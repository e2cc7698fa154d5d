"""Which Hugging Face architecture each model family maps onto, and back.

Each architecture module (gpt_bigcode, llama) exposes the same pure functions:
  hf_config(model, vocab_size, bos, eos, pad) -> transformers config   (ExportError if impossible)
  model_config(hf_config) -> ModelConfig                              (ConfigError if impossible)
  to_hf(megatron_state, model, vocab_size) -> HF state dict           (TP=1/PP=1 names)
  from_hf(hf_state, model, padded_vocab) -> megatron state dict
  IGNORED_MEGATRON, ignored_hf(model): keys that are deliberately not mapped
"""

from __future__ import annotations

from types import ModuleType

from megatron_rrtf.convert import gpt_bigcode, llama
from megatron_rrtf.errors import ConfigError, ExportError

BY_FAMILY: dict[str, ModuleType] = {gpt_bigcode.FAMILY: gpt_bigcode, llama.FAMILY: llama}
BY_MODEL_TYPE: dict[str, ModuleType] = {gpt_bigcode.MODEL_TYPE: gpt_bigcode,
                                        llama.MODEL_TYPE: llama}


def for_family(family: str) -> ModuleType:
    if family not in BY_FAMILY:
        raise ExportError(f"model.family={family!r} has no Hugging Face mapping; "
                          f"known: {', '.join(BY_FAMILY)}")
    return BY_FAMILY[family]


def for_hf_config(hf_config) -> ModuleType:
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in BY_MODEL_TYPE:
        raise ConfigError(f"Hugging Face model_type={model_type!r} is not supported; import "
                          f"takes {', '.join(m.ARCHITECTURE for m in BY_MODEL_TYPE.values())}")
    return BY_MODEL_TYPE[model_type]
