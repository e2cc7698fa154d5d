"""`mrrtf pretrain`: build model, data mixture and objectives from one config, then train."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from megatron_rrtf.config import RunConfig
from megatron_rrtf.objectives.causal import causal_sample
from megatron_rrtf.objectives.mixture import ObjectiveMixture, collate
from megatron_rrtf.training.flops import flops_per_token
from megatron_rrtf.training.launch import training_run, write_run_config
from megatron_rrtf.training.loop import LoopSpec, Trainer
from megatron_rrtf.training.setup import build_model_state
from pretrain.batches import PretrainBatches, to_model_batch
from pretrain.forward import STAT_NAMES, make_forward_step

log = logging.getLogger(__name__)


def _eval_batches(streams: dict, ids, seq_len: int, micro: int, max_batches: int,
                  separate_documents: bool) -> dict:
    """Fixed held-out micro-batches per domain (causal LM loss), the same at every evaluation."""
    out = {}
    for domain, stream in streams.items():
        samples = list(itertools.islice(iter(stream), micro * max_batches))
        n = len(samples) // micro
        if dist.is_initialized():  # every rank runs the same number of micro-batches
            t = torch.tensor([n], device="cuda" if torch.cuda.is_available() else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            n = int(t.item())
        if n == 0:
            log.warning("eval domain %s: fewer than train.micro_batch_size held-out samples on "
                        "some rank; not evaluated", domain)
            continue
        batches = [to_model_batch(collate([causal_sample(s, ids, seq_len)
                                           for s in samples[i * micro:(i + 1) * micro]]),
                                  separate_documents)
                   for i in range(n)]
        for b in batches:
            b["objective_id"] = torch.zeros_like(b["objective_id"])
        out[domain] = (lambda bs=batches: bs)
    return out


def build_pretrain_spec(config: RunConfig, tokenizer) -> LoopSpec:
    """Data stream + objective mixture + forward step for this rank."""
    from megatron_rrtf.data.stream import build_eval_streams, build_train_stream

    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    t, m = config.train, config.model
    stream = build_train_stream(config, tokenizer, dp_rank, dp_size,
                                num_samples=t.train_steps * t.global_batch_size)
    separate = config.data.document_attention == "separate"
    mixture = ObjectiveMixture(config.objectives, tokenizer.special_ids, m.seq_length,
                               encode=tokenizer.encode, decode=tokenizer.decode, seed=t.seed,
                               per_document_prefix=separate)
    source = PretrainBatches(stream, mixture, t.micro_batch_size, m.seq_length, separate)
    eval_sources = {}
    if t.eval_interval:
        eval_sources = _eval_batches(build_eval_streams(config, tokenizer, dp_rank, dp_size),
                                     tokenizer.special_ids, m.seq_length, t.micro_batch_size,
                                     t.eval_batches, separate)
    vocab = config.model.padded_vocab_for(tokenizer.vocab_size)
    return LoopSpec(source=source, forward_step=make_forward_step(m.attention_backend == "local"),
                    stat_names=STAT_NAMES, counter_names=source.counter_names(),
                    eval_sources=eval_sources, tokens_per_sample=m.seq_length,
                    flops_per_token=flops_per_token(m, vocab))


def run_pretrain(config: RunConfig) -> dict[str, Any]:
    """Train (or resume) the run `config` describes; returns the run summary. Process groups
    are set up for the run and torn down after it."""
    with training_run(config) as tokenizer:
        spec = build_pretrain_spec(config, tokenizer)
        state = build_model_state(config, config.model.padded_vocab_for(tokenizer.vocab_size))
        write_run_config(config)
        return Trainer(config, state, spec).run()
