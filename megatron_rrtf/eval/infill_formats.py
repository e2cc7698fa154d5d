"""Infilling in the prompt formats the objectives train on, scored in the sandbox.

Formats: `span` (CodeGen2 sentinel prompt `prefix <mask_1> suffix <|endoftext|> <sep> <mask_1>`,
stop `<eom>`), `fim_psm` and `fim_spm` (bigcode FIM, stop `<|endoftext|>`); the prompts come from
`objectives.prompts`, so evaluation uses the exact layout training used. A format runs only if the
tokenizer has its special tokens; otherwise `missing_tokens` names them and the caller skips it.

Prompts longer than the model's context are cut around the hole: the prefix loses tokens at its
start, the suffix at its end (the program that is run is always the whole task). The model-side
step (`complete`) is a function, so the scoring is tested with a perfect and a wrong completer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from megatron_rrtf.eval.infill import InfillKind, InfillTask, build_infill_tasks, evaluate_infills
from megatron_rrtf.objectives.prompts import InfillPrompt, fim_prompt, span_infill_prompt
from megatron_rrtf.sandbox import SandboxLimits
from megatron_rrtf.tokenizer.special_tokens import (
    EOD,
    EOM,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    SEP,
    SpecialTokenIds,
    mask_token,
)

INFILL_FORMATS = ("span", "fim_psm", "fim_spm")
INFILL_KINDS: tuple[InfillKind, ...] = ("single_line", "multi_line", "random_span")
REQUIRED_TOKENS = {
    "span": (mask_token(1), EOD, SEP, EOM),
    "fim_psm": (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, EOD),
    "fim_spm": (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, EOD),
}
PROMPT_SPECIAL_TOKENS = 5
"""At most this many special tokens wrap prefix and suffix in any format."""

Complete = Callable[[Sequence[InfillPrompt]], list[str]]
"""Generated middle text for each prompt (one greedy sample), in order."""


def missing_tokens(fmt: str, token_to_id: Callable[[str], int | None]) -> list[str]:
    """The special tokens `fmt` needs that the tokenizer lacks (empty: the format can run)."""
    return [t for t in REQUIRED_TOKENS[fmt] if token_to_id(t) is None]


def fit_to_budget(prefix: list[int], suffix: list[int], budget: int
                  ) -> tuple[list[int], list[int]]:
    """Keep the tokens nearest the hole: suffix gets at least half the budget when both are
    long, the prefix the rest; prefix is cut at its start, suffix at its end."""
    if len(prefix) + len(suffix) <= budget:
        return prefix, suffix
    keep_suffix = min(len(suffix), max(budget // 2, budget - len(prefix)))
    keep_prefix = budget - keep_suffix
    return prefix[len(prefix) - keep_prefix:], suffix[:keep_suffix]


def build_prompt(task: InfillTask, fmt: str, encode: Callable[[str], list[int]],
                 ids: SpecialTokenIds, budget: int | None = None) -> InfillPrompt:
    """The prompt for one task in one format; prefix + suffix hold at most `budget` tokens."""
    prefix, suffix = encode(task.prefix), encode(task.suffix)
    if budget is not None:
        prefix, suffix = fit_to_budget(prefix, suffix, budget)
    # The builders encode text; ours is already encoded (and maybe cut), so `encode` is `list`.
    if fmt == "span":
        return span_infill_prompt(prefix, suffix, list, ids)  # type: ignore[arg-type]
    if fmt in ("fim_psm", "fim_spm"):
        return fim_prompt(prefix, suffix, list, ids, mode=fmt[4:])  # type: ignore[arg-type]
    raise ValueError(f"infill format {fmt!r} is not one of {', '.join(INFILL_FORMATS)}")


def pick_tasks(problems: Mapping[str, Mapping[str, Any]], kind: InfillKind, limit: int | None,
               seed: int = 0) -> list[InfillTask]:
    """Every task of `kind`, or `limit` of them drawn without replacement (seeded), kept in
    problem order, so a small budget still spreads over many problems."""
    tasks = build_infill_tasks(problems, kind, seed=seed)
    if limit is None or limit >= len(tasks):
        return tasks
    chosen = np.random.default_rng([seed, INFILL_KINDS.index(kind)]).choice(
        len(tasks), size=limit, replace=False)
    return [tasks[i] for i in sorted(chosen)]


def score_format(tasks_by_kind: Mapping[str, Sequence[InfillTask]], fmt: str, complete: Complete,
                 encode: Callable[[str], list[int]], ids: SpecialTokenIds,
                 budget: int | None = None, limits: SandboxLimits | None = None,
                 workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """pass@1 per mask type for one prompt format: {kind: {"pass@1", "num_tasks", "tasks":
    {task_id: {"middle", "outcome"}}}}."""
    out: dict[str, Any] = {}
    for kind, tasks in tasks_by_kind.items():
        prompts = [build_prompt(t, fmt, encode, ids, budget) for t in tasks]
        middles = complete(prompts)
        if len(middles) != len(tasks):
            raise ValueError(f"complete() returned {len(middles)} middles for {len(tasks)} prompts")
        extra = {"limits": limits} if limits is not None else {}
        scored = evaluate_infills(tasks, {t.task_id: [m] for t, m in zip(tasks, middles)},
                                  ks=(1,), workers=workers, progress=progress, **extra)
        out[kind] = {"pass@1": scored["pass@k"].get(1, 0.0), "num_tasks": len(tasks),
                     "harness_errors": sum(r[0].get("error_type") == "HarnessError"
                                           for r in scored["tasks"].values()),
                     "tasks": {t.task_id: {"middle": m, "outcome": r[0]["outcome"]}
                               for (t, m), r in zip(zip(tasks, middles),
                                                    scored["tasks"].values())}}
    return out
