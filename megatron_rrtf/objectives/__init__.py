"""Pretraining objectives as pure functions over a packed sample (numpy int64, seq_len + 1
tokens) and an explicit numpy Generator: causal LM, CodeGen2 span corruption, bigcode FIM and
prefix-LM, each returning a Sample of seq_len positions; ObjectiveMixture draws one per sample
from (seed, epoch, sample index). Formats and choices: docs/objectives.md."""

from megatron_rrtf.objectives.causal import causal_sample
from megatron_rrtf.objectives.fim import fim_sample, invert_fim_stream
from megatron_rrtf.objectives.mixture import (
    OBJECTIVE_IDS,
    OBJECTIVE_NAMES,
    ObjectiveMixture,
    collate,
    sample_rng,
)
from megatron_rrtf.objectives.prefix_lm import prefix_lm_sample
from megatron_rrtf.objectives.prompts import (
    InfillPrompt,
    extract_middle,
    fim_prompt,
    span_infill_prompt,
)
from megatron_rrtf.objectives.sample import Sample
from megatron_rrtf.objectives.span import invert_span_stream, span_sample

__all__ = [
    "Sample", "causal_sample", "span_sample", "fim_sample", "prefix_lm_sample",
    "invert_span_stream", "invert_fim_stream", "ObjectiveMixture", "collate", "sample_rng",
    "OBJECTIVE_NAMES", "OBJECTIVE_IDS", "InfillPrompt", "span_infill_prompt", "fim_prompt",
    "extract_middle",
]
