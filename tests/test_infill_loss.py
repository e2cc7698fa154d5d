"""Infill loss / exact match on held-out code: hand-built models whose ordering is certain, the
NLL against a manual computation, and the holes' construction."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_rrtf.eval.infill_formats import INFILL_FORMATS, INFILL_KINDS
from megatron_rrtf.eval.infill_loss import (
    build_example,
    exact_match,
    heldout_infill_tasks,
    infill_loss,
    middle_nll,
    normalise_whitespace,
)
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds

IDS = SpecialTokenIds(eod=256, pad=257, sep=258, eom=259, fim_prefix=260, fim_middle=261,
                      fim_suffix=262, fim_pad=263, masks=(264, 265))
VOCAB = 266
SEQ = 96


def encode(text: str) -> list[int]:  # one id per byte: the middle's tokens are its bytes
    return list(text.encode("utf-8"))


DOCS = ["def add(a, b):\n    total = a + b\n    return total\n\n\nclass Box:\n"
        "    def __init__(self, x):\n        self.x = x\n",
        "import os\n\nPATH = os.getcwd()\nfor name in os.listdir(PATH):\n    print(name)\n"]


def tasks_by_kind(n=6):
    return {k: heldout_infill_tasks(DOCS, k, n, encode, max_middle_tokens=40) for k in
            INFILL_KINDS}


MARGIN = 5.0


def oracle_nll(tokens, labels):
    """Always predicts the true next token (it sees the whole document, suffix and middle
    included): logit MARGIN on the label, 0 elsewhere."""
    logits = torch.zeros(*tokens.shape, VOCAB, dtype=torch.float64)
    logits.scatter_(-1, labels[..., None], MARGIN)
    return -torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]


TABLE = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)


def prefix_only_nll(tokens, labels):
    """A bigram model: its prediction at t depends on tokens[t] only, never on the suffix."""
    return -torch.log_softmax(TABLE[tokens], -1).gather(-1, labels[..., None])[..., 0]


def test_a_model_that_predicts_the_middle_beats_one_that_cannot_see_the_suffix():
    tasks = tasks_by_kind()
    oracle = infill_loss(oracle_nll, tasks, INFILL_FORMATS, encode, IDS, SEQ)
    blind = infill_loss(prefix_only_nll, tasks, INFILL_FORMATS, encode, IDS, SEQ)
    per_token = math.log1p((VOCAB - 1) * math.exp(-MARGIN))  # -log softmax of the margin
    for fmt in INFILL_FORMATS:
        for kind in INFILL_KINDS:
            o, b = oracle[fmt][kind], blind[fmt][kind]
            assert o["num_tasks"] == len(tasks[kind]) > 0
            assert o["loss"] == pytest.approx(per_token, rel=1e-12)  # exact, whatever the task
            assert o["bits_per_byte"] == pytest.approx(
                per_token * o["num_tokens"] / math.log(2) / o["num_bytes"], rel=1e-12)
            assert o["loss"] < b["loss"] and o["bits_per_byte"] < b["bits_per_byte"]


def test_the_middle_nll_is_the_sum_over_exactly_the_middle_tokens():
    tasks = tasks_by_kind(4)["multi_line"]
    for fmt in INFILL_FORMATS:
        examples = [build_example(t, fmt, encode, IDS, SEQ) for t in tasks]
        got = middle_nll(prefix_only_nll, examples, IDS.pad, batch_size=3)  # padded batches
        for example, task, value in zip(examples, tasks, got):
            stream = example.stream
            assert bytes(stream[example.middle_start:]).decode() == task.middle
            manual = -sum(torch.log_softmax(TABLE[stream[i - 1]], -1)[stream[i]].item()
                          for i in range(example.middle_start, len(stream)))
            assert value == pytest.approx(manual, rel=1e-12)


def test_each_format_puts_the_suffix_in_the_prompt_and_fits_the_context():
    task = tasks_by_kind(1)["single_line"][0]
    for fmt in INFILL_FORMATS:
        example = build_example(task, fmt, encode, IDS, SEQ)
        prompt = example.stream[:example.middle_start]
        assert len(example.stream) <= SEQ + 1
        suffix = encode(task.suffix)[:8]
        assert any(prompt[i:i + len(suffix)] == suffix for i in range(len(prompt)))


@pytest.mark.parametrize("kind", INFILL_KINDS)
def test_holes_cut_a_held_out_document_and_are_the_same_for_the_same_seed(kind):
    tasks = heldout_infill_tasks(DOCS, kind, 5, encode, max_middle_tokens=40, seed=3)
    assert tasks and tasks == heldout_infill_tasks(DOCS, kind, 5, encode, 40, seed=3)
    for t in tasks:
        assert t.prefix + t.middle + t.suffix in DOCS and 0 < len(encode(t.middle)) <= 40
        if kind != "random_span":
            assert t.middle.endswith("\n") and t.middle.strip() and \
                (t.prefix == "" or t.prefix.endswith("\n"))
        if kind == "single_line":
            assert t.middle.count("\n") == 1
        if kind == "multi_line":
            assert 2 <= t.middle.count("\n") <= 5


def test_exact_match_ignores_whitespace_but_not_content():
    tasks = tasks_by_kind(4)
    budget = SEQ - 40
    for kind, kind_tasks in tasks.items():
        spaced = [" " + t.middle.replace(" ", "  ") + "\n\n" for t in kind_tasks]
        got = exact_match(lambda prompts, s=spaced: s, {kind: kind_tasks}, ["fim_psm"], encode,
                          IDS, budget)
        assert got["fim_psm"][kind] == {"exact_match": 1.0, "num_tasks": len(kind_tasks)}
        wrong = [t.middle + "x" for t in kind_tasks]
        got = exact_match(lambda prompts, w=wrong: w, {kind: kind_tasks}, ["span"], encode,
                          IDS, budget)
        assert got["span"][kind]["exact_match"] == 0.0
    assert normalise_whitespace("  a\n\tb  ") == "a b"
