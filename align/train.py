"""RRTF training on the megatron-core engine.

Ranked records (align/rank.py) -> per prompt, the prompt and its K candidate responses packed into
rows (megatron_rrtf/rrtf/packing.py) -> GPTModel logits -> each predicted response token's
log-prob through megatron's vocab-parallel cross entropy (exact under tensor parallelism) ->
per-candidate sums -> the configured ranking loss (`rrtf` or `rrhf`, + SFT). Only response tokens
carry loss. The same Trainer as pretraining gives TP/PP/DP, checkpoints, exact resume, metrics.

Packing restarts position ids per response; both families follow position ids (the RoPE family
through model.build.PositionedGPTModel), so packed and padded layouts give the same numbers.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from megatron.core import parallel_state, tensor_parallel

from megatron_rrtf.config import RunConfig
from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.jsonl import read_jsonl
from megatron_rrtf.rrtf.batch import (
    RankedExample,
    build_rrtf_batch,
    examples_from_ranked,
    loss_options,
)
from megatron_rrtf.rrtf.losses import ranking_loss
from megatron_rrtf.rrtf.packing import to_prompt_grid
from megatron_rrtf.rrtf.problems import PromptTemplate
from megatron_rrtf.training.loop import LoopSpec

log = logging.getLogger(__name__)

STAT_NAMES = ["loss", "loss/rank", "loss/sft"]


def read_ranked(path: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(path, "ranked set", "run `mrrtf rrtf rank` first (it writes the ranked set)")


class RankedBatches:
    """BatchSource over ranked examples: prompts in a per-epoch shuffled order from
    (seed, epoch); each micro-batch holds train.micro_batch_size prompts with all candidates.

    State: the number of prompts consumed (global) and the seed."""

    def __init__(self, examples: list[RankedExample], config: RunConfig, encode, eos_id: int,
                 pad_id: int, dp_rank: int, dp_size: int):
        if not examples:
            raise DataError("the ranked set has no problem with a usable response; nothing to "
                            "train on (check the sampling and ranking outputs)")
        self.examples = examples
        self.config = config
        self.encode, self.eos_id, self.pad_id = encode, eos_id, pad_id
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.seed = config.train.seed
        self.consumed = 0
        self.pack = config.rrtf.pack_candidates
        self._orders: dict[int, np.ndarray] = {}
        # Pipeline stages exchange fixed-shape tensors: pad every micro-batch to [rows, seq].
        self.fixed_shape = config.parallel.pipeline_parallel > 1
        self.rows = self._max_rows()

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, epoch)))
            self._orders = {epoch: rng.permutation(len(self.examples))}
        return self._orders[epoch]

    def _example(self, index: int) -> RankedExample:
        epoch, j = divmod(index, len(self.examples))
        return self.examples[int(self._order(epoch)[j])]

    def _max_rows(self) -> int:
        """Rows a micro-batch can need: packing never uses more than one row per candidate."""
        return self.config.train.micro_batch_size * max(len(e.codes) for e in self.examples)

    def _tensors(self, examples: list[RankedExample]) -> dict[str, torch.Tensor]:
        seq = self.config.model.seq_length
        b = build_rrtf_batch(examples, self.encode, self.eos_id, pack=self.pack, max_len=seq,
                             pad_id=self.pad_id)
        c = b.candidates
        rows, cols = c.tokens.shape
        if cols > seq:
            raise DataError(f"a prompt + response is {cols} tokens, over model.seq_length={seq}")
        tokens, position_ids, mask = c.tokens, c.position_ids, c.attention_mask
        if self.fixed_shape:
            tokens, position_ids, mask = self._pad_to_fixed(c, rows, cols, seq)
        out = dict(tokens=tokens, position_ids=position_ids, attention_mask=mask,
                   pred_row=c.pred_row, pred_col=c.pred_col, target=c.target,
                   candidate=c.candidate, lengths=c.lengths, group_of=c.group_of,
                   index_in_group=c.index_in_group, scores=b.scores, is_teacher=b.is_teacher,
                   valid=b.valid)
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        return {k: v.to(device) for k, v in out.items()}

    def _pad_to_fixed(self, c, rows: int, cols: int, seq: int):
        """[rows, seq] tensors; padding attends causally among padding only (no empty rows)."""
        tokens = torch.full((self.rows, seq), self.pad_id, dtype=torch.long)
        position_ids = torch.arange(seq).repeat(self.rows, 1)
        mask = ~torch.ones(seq, seq, dtype=torch.bool).tril()
        mask = mask.repeat(self.rows, 1, 1, 1)
        tokens[:rows, :cols] = c.tokens
        position_ids[:rows, :cols] = c.position_ids
        mask[:rows, :, :cols, :cols] = c.attention_mask
        mask[:rows, :, :cols, cols:] = True
        mask[:rows, :, cols:, :cols] = True
        return tokens, position_ids, mask

    def next_microbatches(self, count: int) -> list[dict[str, torch.Tensor]]:
        mbs = self.config.train.micro_batch_size
        out = []
        for _ in range(count):
            start = self.consumed + self.dp_rank * mbs
            out.append(self._tensors([self._example(i) for i in range(start, start + mbs)]))
            self.consumed += mbs * self.dp_size
        return out

    def counters(self, batches) -> dict[str, float]:
        return {"prompts": float(sum(int(b["group_of"].max()) + 1 for b in batches)),
                "nonpad_tokens": float(sum(int((b["position_ids"] > 0).sum()) for b in batches))}

    def state_dict(self) -> dict[str, Any]:
        return {"consumed_prompts": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["seed"]) != self.seed:
            raise DataError(f"RRTF data state was saved with train.seed={state['seed']}, this run "
                            f"has {self.seed}; resuming would change the prompt order")
        self.consumed = int(state["consumed_prompts"])


def candidate_logprobs_tp(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-prob of each candidate's response tokens from vocab-parallel logits
    [R, S, V/TP]: megatron's vocab-parallel cross entropy at the predicting positions."""
    picked = logits[batch["pred_row"], batch["pred_col"]].float()                  # [N, V/TP]
    nll = tensor_parallel.vocab_parallel_cross_entropy(picked.unsqueeze(0),
                                                       batch["target"].unsqueeze(0))  # [1, N]
    sums = torch.zeros(batch["lengths"].numel(), dtype=nll.dtype, device=nll.device)
    return sums.index_add(0, batch["candidate"], -nll[0])                          # [C]


class _GridView:
    """The attributes `to_prompt_grid` reads, from a micro-batch dict."""

    def __init__(self, batch: dict[str, torch.Tensor]):
        self.group_of = batch["group_of"]
        self.index_in_group = batch["index_in_group"]
        self.num_candidates = int(batch["lengths"].numel())


def rrtf_loss_func(batch: dict[str, torch.Tensor], config: RunConfig, logits: torch.Tensor):
    view = _GridView(batch)
    logp = candidate_logprobs_tp(logits, batch)
    logp_grid, present = to_prompt_grid(logp, view)
    len_grid, _ = to_prompt_grid(batch["lengths"].to(logp.dtype), view, fill=1.0)
    out = ranking_loss(config.rrtf.loss, logp_grid, len_grid, batch["scores"],
                       batch["is_teacher"], present & batch["valid"], reduction="sum",
                       **loss_options(config.rrtf))
    prompts = torch.tensor(logp_grid.shape[0], dtype=torch.float64, device=logp.device)
    stats = {name: torch.stack([value.detach().double(), prompts])
             for name, value in (("loss", out.total), ("loss/rank", out.rank),
                                 ("loss/sft", out.ft))}
    # Sum over the global batch / number of prompts: the mean per-prompt loss (Trainer).
    return out.total, prompts.to(torch.int), stats


def forward_step(config: RunConfig, batch: dict[str, torch.Tensor], model):
    logits = model(batch["tokens"], batch["position_ids"], batch["attention_mask"])
    return logits, partial(rrtf_loss_func, batch, config)


def build_rrtf_spec(config: RunConfig, tokenizer, ranked_path: str | Path) -> LoopSpec:
    template = PromptTemplate.from_config(config.rrtf)
    examples = examples_from_ranked(read_ranked(ranked_path), template)
    if config.model.attention_backend == "local":
        raise ConfigError("model.attention_backend=local cannot take RRTF's block masks with "
                          "position restarts; use auto or sdpa")
    source = RankedBatches(examples, config, tokenizer.encode, tokenizer.eod, tokenizer.pad,
                           parallel_state.get_data_parallel_rank(),
                           parallel_state.get_data_parallel_world_size())
    log.info("RRTF training set: %d prompts, up to %d candidates each, %s layout",
             len(examples), max(len(e.codes) for e in examples),
             "packed" if source.pack else "padded")
    return LoopSpec(source=source, forward_step=partial(forward_step, config),
                    stat_names=STAT_NAMES, counter_names=["prompts", "nonpad_tokens"],
                    tokens_counter="nonpad_tokens",
                    micro_batch_rows=source.rows if source.fixed_shape else None)


def run_rrtf_train(config: RunConfig, ranked_path: str | Path) -> dict[str, Any]:
    """Train on a ranked set; start from checkpoint.init_from (the pretrained/imported model).
    Process groups are set up for the run and torn down after it."""
    from megatron_rrtf.training.launch import training_run, write_run_config
    from megatron_rrtf.training.loop import Trainer
    from megatron_rrtf.training.setup import build_model_state

    with training_run(config) as tokenizer:
        spec = build_rrtf_spec(config, tokenizer, ranked_path)
        state = build_model_state(config, config.model.padded_vocab_for(tokenizer.vocab_size))
        write_run_config(config)
        return Trainer(config, state, spec).run()
