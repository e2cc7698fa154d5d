"""Lay out K candidate responses of a prompt for one forward pass, and read back each
candidate's summed response log-prob.

Two layouts, same numbers (tested to 1e-5 on a causal transformer):
  padded  one row per candidate: [prompt, response_k, pad...]; the prompt is recomputed K times
          and short responses carry padding up to the longest.
  packed  [prompt, response_1, ..., response_K] in one row (several prompts' groups share a row
          when they fit): the prompt is computed once; response k attends to its own prompt and
          itself only (a block "document" mask), and its position ids restart at len(prompt), so
          every response sees exactly what it would see alone after the prompt.

Both give `attention_mask` [R, 1, S, S] bool with True = masked (megatron GPTModel's
convention; SDPA wants the negation) and `position_ids` [R, S]. Loss is on response tokens only:
the first response token is predicted from the prompt's last position, which in the packed
layout is shared by all K responses, so per-candidate log-probs are read through explicit
gather indices (`pred_row`, `pred_col`, `target`, `candidate`) rather than a shifted label row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from megatron_rrtf.errors import DataError


@dataclass(frozen=True)
class CandidateGroup:
    """One prompt and its candidate responses, as token ids (responses end with EOS if wanted)."""

    prompt: Sequence[int]
    responses: Sequence[Sequence[int]]


@dataclass
class CandidateBatch:
    tokens: Tensor
    """(R, S) int64 input ids."""
    position_ids: Tensor
    """(R, S) int64; in the packed layout they restart at len(prompt) for every response."""
    attention_mask: Tensor
    """(R, 1, S, S) bool, True = query may NOT attend to key."""
    pred_row: Tensor
    """(N,) row of the position whose logits predict response token n."""
    pred_col: Tensor
    """(N,) column of that position."""
    target: Tensor
    """(N,) the response token predicted."""
    candidate: Tensor
    """(N,) flat candidate index (groups in input order, then responses in order)."""
    lengths: Tensor
    """(C,) response length of each flat candidate."""
    group_of: Tensor
    """(C,) which input group each flat candidate belongs to."""
    index_in_group: Tensor
    """(C,) its position among that group's responses."""

    @property
    def num_candidates(self) -> int:
        return int(self.lengths.numel())

    @property
    def num_tokens(self) -> int:
        """Slots computed by the model (R x S), padding included."""
        return int(self.tokens.numel())


def encode_prompt_response(
    encode: Callable[[str], list[int]], prompt: str, response: str, eos_id: int | None
) -> tuple[list[int], list[int], list[int]]:
    """Tokenise prompt and response separately (so the boundary is exact) and return
    (tokens, labels, loss_mask) for one SFT row: labels[i] = tokens[i + 1], loss only where the
    label is a response token (or the EOS closing it)."""
    p = list(encode(prompt))
    r = list(encode(response)) + ([eos_id] if eos_id is not None else [])
    if not p or not r:
        raise DataError("encode_prompt_response: prompt and response must each give >= 1 token")
    tokens = p + r
    labels = tokens[1:] + [tokens[-1]]
    loss_mask = [0] * (len(p) - 1) + [1] * len(r) + [0]
    return tokens, labels, loss_mask


class _RowBuilder:
    """Accumulates tokens with their (segment, document) ids and the gather indices."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.segment: list[int] = []
        self.document: list[int] = []

    def add_chunk(self, seg: int, prompt: Sequence[int], responses: list[tuple[int, Sequence[int]]],
                  row: int, gather: list[list[int]]) -> None:
        offset = len(self.tokens)
        p = len(prompt)
        self.tokens += list(prompt)
        self.positions += range(p)
        self.segment += [seg] * p
        self.document += [0] * p
        for doc, (flat, resp) in enumerate(responses, start=1):
            start = len(self.tokens)
            self.tokens += list(resp)
            self.positions += range(p, p + len(resp))
            self.segment += [seg] * len(resp)
            self.document += [doc] * len(resp)
            for j, tok in enumerate(resp):
                col = offset + p - 1 if j == 0 else start + j - 1
                gather.append([row, col, tok, flat])

    def __len__(self) -> int:
        return len(self.tokens)


def _check(groups: Sequence[CandidateGroup]) -> None:
    for g, group in enumerate(groups):
        if len(group.prompt) == 0:
            raise DataError(f"candidate group {g}: the prompt has no tokens (need >= 1 to "
                            "predict the first response token)")
        for k, resp in enumerate(group.responses):
            if len(resp) == 0:
                raise DataError(f"candidate group {g} response {k} has no tokens")


def _flat_index(groups: Sequence[CandidateGroup]) -> tuple[list[int], np.ndarray, np.ndarray,
                                                           np.ndarray]:
    offsets, lengths, group_of, index_in = [], [], [], []
    for g, group in enumerate(groups):
        offsets.append(len(lengths))
        for k, resp in enumerate(group.responses):
            lengths.append(len(resp))
            group_of.append(g)
            index_in.append(k)
    return (offsets, np.array(lengths, dtype=np.int64), np.array(group_of, dtype=np.int64),
            np.array(index_in, dtype=np.int64))


def _finish(rows: list[_RowBuilder], gather: list[list[int]], pad_id: int,
            groups: Sequence[CandidateGroup]) -> CandidateBatch:
    seq = max(len(r) for r in rows)
    n_rows = len(rows)
    tokens = np.full((n_rows, seq), pad_id, dtype=np.int64)
    positions = np.zeros((n_rows, seq), dtype=np.int64)
    segment = np.full((n_rows, seq), -1, dtype=np.int64)     # padding: its own segment/document
    document = np.full((n_rows, seq), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        n = len(r)
        tokens[i, :n], positions[i, :n] = r.tokens, r.positions
        segment[i, :n], document[i, :n] = r.segment, r.document
    seg = torch.from_numpy(segment)
    doc = torch.from_numpy(document)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()                 # (S_q, S_k)
    same_seg = seg.unsqueeze(2) == seg.unsqueeze(1)                        # (R, S_q, S_k)
    visible_doc = (doc.unsqueeze(1) == 0) | (doc.unsqueeze(2) == doc.unsqueeze(1))
    allowed = causal & same_seg & visible_doc
    g = torch.tensor(gather, dtype=torch.int64).reshape(-1, 4)
    _, lengths, group_of, index_in = _flat_index(groups)
    return CandidateBatch(
        tokens=torch.from_numpy(tokens), position_ids=torch.from_numpy(positions),
        attention_mask=~allowed.unsqueeze(1),
        pred_row=g[:, 0], pred_col=g[:, 1], target=g[:, 2], candidate=g[:, 3],
        lengths=torch.from_numpy(lengths), group_of=torch.from_numpy(group_of),
        index_in_group=torch.from_numpy(index_in),
    )


def pad_candidates(groups: Sequence[CandidateGroup], pad_id: int = 0) -> CandidateBatch:
    """Baseline layout: one row [prompt, response] per candidate, right-padded to the longest."""
    _check(groups)
    offsets, *_ = _flat_index(groups)
    rows, gather = [], []
    for g, group in enumerate(groups):
        for k, resp in enumerate(group.responses):
            row = _RowBuilder()
            row.add_chunk(0, group.prompt, [(offsets[g] + k, resp)], len(rows), gather)
            rows.append(row)
    return _finish(rows, gather, pad_id, groups)


def _balanced_chunks(items: list[tuple[int, Sequence[int]]], prompt_len: int,
                     max_len: int | None) -> list[list[tuple[int, Sequence[int]]]]:
    """Split one group's responses into as few chunks as fit max_len, balanced by length
    (longest first onto the lightest chunk) so rows padded to the longest waste little."""
    total = sum(len(r) for _, r in items)
    if max_len is None or prompt_len + total <= max_len:
        return [items]
    n = -(-total // (max_len - prompt_len))
    while True:
        bins: list[list[tuple[int, Sequence[int]]]] = [[] for _ in range(n)]
        load = [0] * n
        for flat, resp in sorted(items, key=lambda it: -len(it[1])):
            i = load.index(min(load))
            bins[i].append((flat, resp))
            load[i] += len(resp)
        if max(load) + prompt_len <= max_len:
            return [sorted(b, key=lambda it: it[0]) for b in bins if b]
        n += 1


def pack_candidates(groups: Sequence[CandidateGroup], max_len: int | None = None,
                    pad_id: int = 0) -> CandidateBatch:
    """Packed layout. Each group becomes one chunk [prompt, r_1..r_K]; a group longer than
    `max_len` is split into the fewest length-balanced chunks that fit (each repeating the
    prompt); chunks are placed into rows first-fit by decreasing length. max_len=None: one
    chunk per group, one row per group."""
    _check(groups)
    offsets, *_ = _flat_index(groups)
    chunks: list[tuple[int, list[tuple[int, Sequence[int]]]]] = []
    for g, group in enumerate(groups):
        p = len(group.prompt)
        items = [(offsets[g] + k, resp) for k, resp in enumerate(group.responses)]
        for k, resp in enumerate(group.responses):
            if max_len is not None and p + len(resp) > max_len:
                raise DataError(f"candidate group {g} response {k}: prompt {p} + response "
                                f"{len(resp)} tokens exceed max_len={max_len}; truncate the "
                                "response (max_new_tokens) or raise the sequence length")
        chunks += [(g, c) for c in _balanced_chunks(items, p, max_len)]

    def chunk_len(c: tuple[int, list[tuple[int, Sequence[int]]]]) -> int:
        return len(groups[c[0]].prompt) + sum(len(r) for _, r in c[1])

    rows: list[list[tuple[int, list[tuple[int, Sequence[int]]]]]] = []
    room: list[int] = []
    if max_len is None:
        rows = [[c] for c in chunks]
    else:
        for c in sorted(chunks, key=chunk_len, reverse=True):
            n = chunk_len(c)
            for i, free in enumerate(room):
                if n <= free:
                    rows[i].append(c)
                    room[i] -= n
                    break
            else:
                rows.append([c])
                room.append(max_len - n)
    builders, gather = [], []
    for r, row_chunks in enumerate(rows):
        b = _RowBuilder()
        for seg, (g, resps) in enumerate(row_chunks):
            b.add_chunk(seg, groups[g].prompt, resps, r, gather)
        builders.append(b)
    return _finish(builders, gather, pad_id, groups)


def candidate_logprobs(logits: Tensor, batch: CandidateBatch) -> tuple[Tensor, Tensor]:
    """Summed response log-prob and response length per flat candidate, from either layout.

    logits: (R, S, V) for batch.tokens. Only the N predicting positions go through log_softmax."""
    picked = logits[batch.pred_row, batch.pred_col].float()               # (N, V)
    token_logp = picked.log_softmax(-1).gather(1, batch.target.unsqueeze(1)).squeeze(1)  # (N,)
    sums = torch.zeros(batch.num_candidates, dtype=token_logp.dtype, device=logits.device)
    sums = sums.index_add(0, batch.candidate.to(logits.device), token_logp)  # (C,)
    return sums, batch.lengths.to(logits.device)


def to_prompt_grid(values: Tensor, batch: CandidateBatch, fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Flat per-candidate values (C,) -> ([B, K_max], valid [B, K_max]) as the losses take them."""
    n_groups = int(batch.group_of.max()) + 1 if batch.num_candidates else 0
    k_max = int(batch.index_in_group.max()) + 1 if batch.num_candidates else 0
    grid = torch.full((n_groups, k_max), fill, dtype=values.dtype, device=values.device)
    valid = torch.zeros((n_groups, k_max), dtype=torch.bool, device=values.device)
    g, k = batch.group_of.to(values.device), batch.index_in_group.to(values.device)
    grid = grid.index_put((g, k), values)
    valid[g, k] = True
    return grid, valid
