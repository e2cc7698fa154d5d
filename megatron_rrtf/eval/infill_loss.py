"""Infill loss and infill exact match on held-out code: infilling metrics that move at small scale.

pass@1 of a few-million-parameter model is 0 whatever it was trained on; the likelihood it gives
the true middle is not. Per prompt format (`span`, `fim_psm`, `fim_spm`, the layouts training
used, from `eval.infill_formats.build_prompt`) and mask type, on documents of the run's own
held-out split of code (never trained on):

- **infill loss**: NLL of the true middle's tokens given the prompt (prefix and suffix), in
  nats per middle token, and bits per byte = total NLL / ln 2 / UTF-8 bytes of the middles. Only
  the middle's tokens count (not the prompt, not the stop token), so the three formats score the
  same targets and can be compared with each other and with causal-only runs (a causal-only
  model sees the sentinels as unknown tokens and must guess the middle from the prefix alone).
- **exact match**: the greedy middle equals the true one after whitespace normalisation
  (`normalise_whitespace`: runs of whitespace -> one space, ends stripped).

Holes (our construction, seeded by (seed, kind) so every run of a grid gets the same tasks):
`single_line` a whole non-blank line (with its newline); `multi_line` 2-5 consecutive lines
starting and ending on a non-blank line; `random_span` a character span of 1-120 characters
starting anywhere. Each hole's middle has at most `max_middle_tokens` tokens; prefix and suffix
are cut around the hole (`fit_to_budget`) so prompt + middle fit the model's context.

The model enters as a function (`TokenNLL` for the loss, `Complete` for exact match), so the
metric is tested on hand-built models whose ordering is certain; `megatron_token_nll` wraps
our GPTModel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from megatron_rrtf.errors import DataError
from megatron_rrtf.eval.infill import InfillKind, InfillTask
from megatron_rrtf.eval.infill_formats import (
    INFILL_KINDS,
    PROMPT_SPECIAL_TOKENS,
    Complete,
    build_prompt,
)
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds

TokenNLL = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(tokens [b, s], labels [b, s]) -> NLL in nats of each label given tokens[:, :t+1], [b, s]."""

MAX_LINE_CHARS = 200
MULTI_LINE_RANGE = (2, 5)
RANDOM_SPAN_CHARS = (1, 120)


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


def _line_starts(text: str) -> tuple[list[str], np.ndarray]:
    lines = text.splitlines(keepends=True)
    return lines, np.cumsum([0] + [len(line) for line in lines])


def _hole(text: str, kind: InfillKind, rng: np.random.Generator) -> tuple[int, int] | None:
    """(start, end) character offsets of one hole of `kind` in `text`, or None if it has none."""
    if kind == "random_span":
        if not text.strip():
            return None
        start = int(rng.integers(0, len(text)))
        length = int(rng.integers(RANDOM_SPAN_CHARS[0], RANDOM_SPAN_CHARS[1] + 1))
        end = min(len(text), start + length)
        return (start, end) if text[start:end].strip() else None
    lines, starts = _line_starts(text)
    good = [i for i, line in enumerate(lines) if line.strip() and len(line) <= MAX_LINE_CHARS]
    if kind == "single_line":
        if not good:
            return None
        i = good[int(rng.integers(0, len(good)))]
        return int(starts[i]), int(starts[i + 1])
    if kind == "multi_line":
        count = int(rng.integers(MULTI_LINE_RANGE[0], MULTI_LINE_RANGE[1] + 1))
        firsts = [i for i in good if i + count <= len(lines) and lines[i + count - 1].strip()]
        if not firsts:
            return None
        i = firsts[int(rng.integers(0, len(firsts)))]
        return int(starts[i]), int(starts[i + count])
    raise ValueError(f"infill kind {kind!r} is not one of {', '.join(INFILL_KINDS)}")


def heldout_infill_tasks(documents: Sequence[str], kind: InfillKind, num_tasks: int,
                         encode: Callable[[str], list[int]], max_middle_tokens: int = 48,
                         seed: int = 0) -> list[InfillTask]:
    """`num_tasks` holes of `kind` in documents drawn at random (seeded by (seed, kind)), each
    middle at most `max_middle_tokens` tokens; fewer if the documents run out of holes."""
    docs = [d for d in documents if d.strip()]
    if not docs:
        raise DataError("no held-out code documents to build infill tasks from; raise "
                        "data.heldout_fraction or add a code source")
    rng = np.random.default_rng([seed, INFILL_KINDS.index(kind)])
    tasks: list[InfillTask] = []
    seen: set[tuple[int, int, int]] = set()
    for _ in range(num_tasks * 20):  # a bounded number of tries: some holes are too long
        if len(tasks) == num_tasks:
            break
        d = int(rng.integers(0, len(docs)))
        hole = _hole(docs[d], kind, rng)
        if hole is None or (d, *hole) in seen:
            continue
        start, end = hole
        text = docs[d]
        if len(encode(text[start:end])) > max_middle_tokens:
            continue
        seen.add((d, start, end))
        tasks.append(InfillTask(f"{kind}/doc{d}/{start}-{end}", text[:start], text[start:end],
                                text[end:], tests="", entry_point=""))
    return tasks


@dataclass(frozen=True)
class InfillExample:
    """One task in one format as a scored sequence: prompt then the true middle."""

    task_id: str
    stream: list[int]
    """prompt + middle; the model reads stream[:-1] and predicts stream[1:]."""
    middle_start: int
    """stream index of the first middle token."""
    middle_bytes: int

    @property
    def middle_tokens(self) -> int:
        return len(self.stream) - self.middle_start


def build_example(task: InfillTask, fmt: str, encode: Callable[[str], list[int]],
                  ids: SpecialTokenIds, seq_len: int) -> InfillExample:
    """The prompt (prefix and suffix cut around the hole to fit) followed by the middle, at most
    seq_len + 1 tokens."""
    middle = encode(task.middle)
    budget = seq_len + 1 - len(middle) - PROMPT_SPECIAL_TOKENS
    if budget < 1 or not middle:
        raise DataError(f"infill task {task.task_id}: a middle of {len(middle)} tokens leaves no "
                        f"room for a prompt in a context of {seq_len}; lower max_middle_tokens")
    prompt = build_prompt(task, fmt, encode, ids, budget).prompt_ids
    return InfillExample(task.task_id, [*prompt, *middle], len(prompt),
                         len(task.middle.encode("utf-8")))


@torch.no_grad()
def middle_nll(token_nll: TokenNLL, examples: Sequence[InfillExample], pad_id: int,
               batch_size: int = 16) -> list[float]:
    """Each example's summed NLL (nats) of its middle tokens."""
    out: list[float] = []
    for first in range(0, len(examples), batch_size):
        batch = examples[first:first + batch_size]
        width = max(len(e.stream) for e in batch) - 1
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)      # [b, s]
        labels = torch.full((len(batch), width), pad_id, dtype=torch.long)      # [b, s]
        mask = torch.zeros((len(batch), width), dtype=torch.float64)            # [b, s]
        for row, e in enumerate(batch):
            stream = torch.tensor(e.stream, dtype=torch.long)
            tokens[row, :len(stream) - 1] = stream[:-1]
            labels[row, :len(stream) - 1] = stream[1:]
            mask[row, e.middle_start - 1:len(stream) - 1] = 1.0  # labels that are middle tokens
        nll = token_nll(tokens, labels).to(torch.float64)                        # [b, s]
        out.extend((nll * mask).sum(dim=1).tolist())
    return out


def summarise(nlls: Sequence[float], examples: Sequence[InfillExample]) -> dict[str, Any]:
    """loss (nats per middle token), bits_per_byte, and the counts behind them (None without
    examples)."""
    if not examples:
        return {"loss": None, "bits_per_byte": None, "num_tasks": 0, "num_tokens": 0,
                "num_bytes": 0}
    total = math.fsum(nlls)
    tokens = sum(e.middle_tokens for e in examples)
    nbytes = sum(e.middle_bytes for e in examples)
    return {"loss": total / max(tokens, 1), "bits_per_byte": total / math.log(2) / max(nbytes, 1),
            "num_tasks": len(examples), "num_tokens": tokens, "num_bytes": nbytes}


def infill_loss(token_nll: TokenNLL, tasks_by_kind: Mapping[str, Sequence[InfillTask]],
                formats: Sequence[str], encode: Callable[[str], list[int]],
                ids: SpecialTokenIds, seq_len: int, batch_size: int = 16
                ) -> dict[str, dict[str, dict[str, Any]]]:
    """{format: {kind: {"loss", "bits_per_byte", "num_tasks", "num_tokens", "num_bytes"}}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for fmt in formats:
        out[fmt] = {}
        for kind, tasks in tasks_by_kind.items():
            examples = [build_example(t, fmt, encode, ids, seq_len) for t in tasks]
            out[fmt][kind] = summarise(middle_nll(token_nll, examples, ids.pad, batch_size),
                                       examples)
    return out


def exact_match(complete: Complete, tasks_by_kind: Mapping[str, Sequence[InfillTask]],
                formats: Sequence[str], encode: Callable[[str], list[int]],
                ids: SpecialTokenIds, budget: int | None) -> dict[str, dict[str, dict[str, Any]]]:
    """{format: {kind: {"exact_match", "num_tasks"}}}: share of greedy middles equal to the
    truth after whitespace normalisation."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for fmt in formats:
        out[fmt] = {}
        for kind, tasks in tasks_by_kind.items():
            middles = complete([build_prompt(t, fmt, encode, ids, budget) for t in tasks])
            if len(middles) != len(tasks):
                raise ValueError(f"complete() returned {len(middles)} middles for {len(tasks)} "
                                 "prompts")
            hits = sum(normalise_whitespace(m) == normalise_whitespace(t.middle)
                       for m, t in zip(middles, tasks))
            out[fmt][kind] = {"exact_match": hits / max(len(tasks), 1), "num_tasks": len(tasks)}
    return out


def megatron_token_nll(model: torch.nn.Module, dense_mask: bool = False) -> TokenNLL:
    """Our GPTModel as a TokenNLL: each row one document, causal, positions from 0."""
    from megatron_rrtf.model.documents import DocumentAttention

    def token_nll(tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, s = tokens.shape
        layout = DocumentAttention.build(np.zeros((b, s), dtype=np.int64),
                                         np.zeros((b, s), dtype=bool))
        return model(tokens, layout.position_ids, layout.model_mask(dense_mask),
                     labels=labels).float()                                       # [b, s]

    return token_nll
