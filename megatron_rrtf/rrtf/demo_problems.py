"""A deterministic family of small programming problems for the CPU RRTF demo.

Templates are compositions of primitives, each with one-line code a ~2M-parameter model can
learn:
  affine   x {*,+,-} a {*,+,-} b             e.g. mul_add(x) -> x * 7 + 3
  list     {sum,count,max,min} of the {even,odd,positive,negative,> k,divisible by k} numbers
  string   {count,remove,keep} the {vowels,digits,spaces,uppercase letters,letter L}
  text     reverse_string, reverse_words, to_upper, repeat_string (training only)
Parameters (a, b, k, L, n) are drawn at random per problem. The held-out split is a set of whole
templates (primitive pairs), chosen so every primitive still occurs in training: held-out pass@1
measures composing known pieces, never seeing the template itself.

Every problem has an instruction, an entry point, 5 asserts computed from the canonical
solution, and the solution. `teacher_records` writes mixed correct and buggy teacher responses
(off-by-one, wrong constant, syntax error, runtime error), each checked to behave as labelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from megatron_rrtf.rrtf.problems import Problem

BUG_KINDS = ("off_by_one", "wrong_constant", "syntax_error", "runtime_error")


@dataclass(frozen=True)
class Template:
    name: str
    """Template id, also the function name."""
    family: str
    arg: str
    """Parameter name: x (int), xs (list of int) or s (str)."""
    build: Callable[[np.random.Generator], tuple[str, str]]
    """rng -> (instruction phrase after 'that returns', return expression)."""


@dataclass(frozen=True)
class DemoProblem:
    problem: Problem
    solution: str
    template: str
    split: str

    def to_json(self) -> dict:
        return self.problem.to_json() | {"canonical_solution": self.solution,
                                          "template": self.template, "split": self.split}


def _ri(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


# ---- affine: x op1 a op2 b -------------------------------------------------------------------
_OPS = [("*", "mul", "times"), ("+", "add", "plus"), ("-", "sub", "minus")]


def _affine(op1: tuple[str, str, str], op2: tuple[str, str, str]) -> Template:
    def build(rng: np.random.Generator) -> tuple[str, str]:
        a, b = _ri(rng, 2, 9), _ri(rng, 1, 9)
        expr = f"x {op1[0]} {a} {op2[0]} {b}"
        return f"x {op1[2]} {a} {op2[2]} {b}, i.e. {expr}", expr
    return Template(f"{op1[1]}_{op2[1]}", "affine", "x", build)


# ---- list: aggregate over a filter ----------------------------------------------------------
_AGGS = [
    ("sum", "the sum of", "sum(x for x in xs if {c})"),
    ("count", "how many there are of", "sum(1 for x in xs if {c})"),
    ("max", "the largest of", "max((x for x in xs if {c}), default=0)"),
    ("min", "the smallest of", "min((x for x in xs if {c}), default=0)"),
]
_FILTERS = [
    ("even", "the even numbers", "x % 2 == 0", False),
    ("odd", "the odd numbers", "x % 2 == 1", False),
    ("pos", "the positive numbers", "x > 0", False),
    ("neg", "the negative numbers", "x < 0", False),
    ("gt", "the numbers greater than {k}", "x > {k}", True),
    ("div", "the numbers divisible by {k}", "x % {k} == 0", True),
]


def _listagg(agg: tuple[str, str, str], filt: tuple[str, str, str, bool]) -> Template:
    def build(rng: np.random.Generator) -> tuple[str, str]:
        k = _ri(rng, 2, 5) if filt[3] else 0
        phrase = f"{agg[1]} {filt[1].format(k=k)} in the list xs (0 if there are none)"
        return phrase, agg[2].format(c=filt[2].format(k=k))
    return Template(f"{agg[0]}_{filt[0]}", "list", "xs", build)


# ---- string: act on a character class -------------------------------------------------------
_ACTIONS = [
    ("count", "the number of {what} in s", "sum(1 for ch in s if {c})"),
    ("remove", "s with all {what} removed", '"".join(ch for ch in s if not ({c}))'),
    ("keep", "only the {what} of s, in order", '"".join(ch for ch in s if {c})'),
]
_CLASSES = [
    ("vowels", "vowels (a, e, i, o, u)", 'ch in "aeiou"', False),
    ("digits", "digits", "ch.isdigit()", False),
    ("spaces", "spaces", 'ch == " "', False),
    ("upper", "uppercase letters", "ch.isupper()", False),
    ("letter", "letters {L}", 'ch == "{L}"', True),
]


def _strclass(act: tuple[str, str, str], cls: tuple[str, str, str, bool]) -> Template:
    def build(rng: np.random.Generator) -> tuple[str, str]:
        letter = "bcdfghklmnprst"[_ri(rng, 0, 13)] if cls[3] else ""
        what = cls[1].format(L=repr(letter))
        return act[1].format(what=what), act[2].format(c=cls[2].format(L=letter))
    return Template(f"{act[0]}_{cls[0]}", "string", "s", build)


def _fixed(name: str, phrase: str, expr: str) -> Template:
    return Template(name, "text", "s", lambda rng: (phrase, expr))


def _repeat(rng: np.random.Generator) -> tuple[str, str]:
    n = _ri(rng, 2, 4)
    return f"s repeated {n} times", f"s * {n}"


def _product(a: Sequence, b: Sequence, make: Callable) -> tuple[list[Template], list[Template]]:
    """All (a_i, b_j) templates; held out: (i + j) % len(b) == 0, so every primitive stays in
    training (each a_i misses one b_j and vice versa)."""
    train, held = [], []
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            (held if (i + j) % len(b) == 0 else train).append(make(x, y))
    return train, held


def templates() -> tuple[list[Template], list[Template]]:
    """(training templates, held-out templates), fixed and deterministic."""
    train, held = [], []
    for a, b, make in ((_OPS, _OPS, _affine), (_AGGS, _FILTERS, _listagg),
                       (_ACTIONS, _CLASSES, _strclass)):
        t, h = _product(a, b, make)
        train += t
        held += h
    train += [_fixed("reverse_string", "s reversed", "s[::-1]"),
              _fixed("reverse_words", "the words of s in reverse order, joined by single spaces",
                     '" ".join(s.split()[::-1])'),
              _fixed("to_upper", "s in uppercase", "s.upper()"),
              Template("repeat_string", "text", "s", _repeat)]
    return train, held


def _sample_input(arg: str, rng: np.random.Generator):
    if arg == "x":
        return _ri(rng, -20, 20)
    if arg == "xs":
        return [_ri(rng, -9, 9) for _ in range(_ri(rng, 0, 7))]
    words = ["cat", "Dog", "a1b2", "moon", "Sky", "tree", "x9", "Hello", "bead", "kit"]
    return " ".join(words[_ri(rng, 0, len(words) - 1)] for _ in range(_ri(rng, 0, 4)))


def _run(code: str, name: str, value):
    ns: dict = {}
    exec(code, ns)  # our own generated code, never model output
    return ns[name](value)


def make_problem(template: Template, rng: np.random.Generator, pid: str, split: str,
                 n_tests: int = 5) -> DemoProblem:
    phrase, expr = template.build(rng)
    name, arg = template.name, template.arg
    solution = f"def {name}({arg}):\n    return {expr}\n"
    kind = {"x": "an integer x", "xs": "a list of integers xs", "s": "a string s"}[arg]
    instruction = f"Write a Python function {name}({arg}) that takes {kind} and returns {phrase}."
    inputs, seen = [], set()
    if arg in ("xs", "s"):
        inputs.append([] if arg == "xs" else "")
        seen.add(repr(inputs[0]))
    while len(inputs) < n_tests:
        value = _sample_input(arg, rng)
        if repr(value) not in seen:
            seen.add(repr(value))
            inputs.append(value)
    tests = "".join(f"assert {name}({v!r}) == {_run(solution, name, v)!r}\n" for v in inputs)
    problem = Problem(id=pid, instruction=instruction, tests=tests, entry_point=name)
    return DemoProblem(problem, solution, name, split)


HeldoutMode = Literal["params", "templates"]
HELDOUT_MODES: tuple[str, ...] = get_args(HeldoutMode)


def generate_demo_problems(n_train: int, n_heldout: int, seed: int = 0,
                           heldout: HeldoutMode = "params"
                           ) -> tuple[list[DemoProblem], list[DemoProblem]]:
    """n_train training problems and n_heldout held-out ones.

    heldout="params": held-out problems come from the training templates with freshly drawn
    parameters and test inputs, and no held-out instruction occurs in training (the model must
    read the parameters from the instruction, not recall an answer). heldout="templates":
    held-out problems come from whole templates never seen in training (composition; beyond
    what the tiny model learns in a CPU demo, kept for larger runs).
    """
    if heldout not in HELDOUT_MODES:
        raise ValueError(f"heldout={heldout!r}: expected one of {HELDOUT_MODES}")
    rng = np.random.default_rng(seed)
    train_t, held_t = templates()
    if heldout == "params":
        train_t = train_t + held_t
    train = _draw(train_t, n_train, rng, "train")
    if heldout == "templates":
        return train, _draw(held_t, n_heldout, rng, "heldout")
    seen = {d.problem.instruction for d in train}
    # only templates with parameters can give an instruction that training has not seen
    param_t = [t for t in train_t if len({t.build(np.random.default_rng(i))[1]
                                          for i in range(4)}) > 1]
    held: list[DemoProblem] = []
    attempt = misses = 0
    # round robin over templates, a used-up template is just skipped; give up once every
    # template has missed many times in a row (the space of instructions is exhausted)
    while len(held) < n_heldout and misses < 20 * len(param_t):
        t = param_t[attempt % len(param_t)]
        attempt += 1
        dp = make_problem(t, rng, f"heldout-{len(held):05d}-{t.name}", "heldout")
        if dp.problem.instruction in seen:
            misses += 1
            continue
        misses = 0
        seen.add(dp.problem.instruction)
        held.append(dp)
    if len(held) < n_heldout:
        raise ValueError(f"could only draw {len(held)} of {n_heldout} held-out problems whose "
                         "instruction is not in training: ask for fewer")
    return train, held


def _draw(tpls: Sequence[Template], n: int, rng: np.random.Generator, split: str
          ) -> list[DemoProblem]:
    """n problems: each template once in order, then templates at random."""
    probs = []
    for i in range(n):
        t = tpls[i % len(tpls)] if i < len(tpls) else tpls[_ri(rng, 0, len(tpls) - 1)]
        probs.append(make_problem(t, rng, f"{split}-{i:05d}-{t.name}", split))
    return probs


# ---- teacher responses -------------------------------------------------------------------
def run_own_code(code: str, tests: str) -> str:
    """'passed', 'failed' (an assert failed) or 'error' (anything raised) for our own generated
    code, in-process; never for model output (that goes through the sandbox)."""
    ns: dict = {}
    try:
        exec(compile(code, "<demo>", "exec"), ns)
        exec(tests, ns)
    except AssertionError:
        return "failed"
    except Exception:  # noqa: BLE001 - any other exception of our own code is an "error"
        return "error"
    return "passed"


def passes(code: str, tests: str) -> bool:
    """Does our own generated code pass its tests?"""
    return run_own_code(code, tests) == "passed"


def _candidates(kind: str, code: str, arg: str) -> list[str]:
    head, body = code.split("\n", 1)
    if kind == "syntax_error":
        return [head.rstrip(":") + "\n" + body]
    if kind == "runtime_error":
        return [head + "\n" + re.sub(rf"\b{arg}\b", f"{arg}_", body)]      # NameError
    if kind == "wrong_constant":
        outs = [head + "\n" + body[:m.start()] + str(int(m.group()) + 1) + body[m.end():]
                for m in re.finditer(r"\b\d+\b", body)]
        outs += [code.replace('"aeiou"', '"aeio"'), code.replace('" "', '"_"'),
                 code.replace(".upper()", ".lower()")]
        return outs
    # off_by_one
    return [code.replace(f"in {arg} ", f"in {arg}[1:] "), code.replace("> ", ">= "),
            code.replace("[::-1]", "[-2::-1]"), code.replace("s * ", "s * -1 + s * "),
            head + "\n" + body.replace("return ", "return 1 + ", 1),
            head + "\n" + body.replace("return ", 'return " " + ', 1)]


def buggy_solution(dp: DemoProblem, kind: str) -> str | None:
    """A plausible wrong version of dp's solution of the given kind that behaves as labelled:
    syntax_error does not compile, runtime_error raises, off_by_one / wrong_constant fail an
    assert without raising. None when no candidate of that kind does."""
    arg = dp.solution.split("(", 1)[1].split(")", 1)[0]
    for cand in _candidates(kind, dp.solution, arg):
        if cand == dp.solution:
            continue
        if kind == "syntax_error":
            try:
                compile(cand, "<bug>", "exec")
            except SyntaxError:
                return cand
            continue
        # runtime_error must raise; a wrong-answer bug must fail by assertion, not raise
        if run_own_code(cand, dp.problem.tests) == ("error" if kind == "runtime_error"
                                                    else "failed"):
            return cand
    return None


_STYLES = ("```python\n{code}```\n", "Here is the function:\n\n```python\n{code}```\n",
           "{code}", "```\n{code}```\nIt returns the requested value.\n")


def teacher_records(problems: Sequence[DemoProblem], per_problem: int = 2,
                    correct_fraction: float = 0.7, seed: int = 0,
                    source: str = "teacher:demo") -> list[dict]:
    """One record per response: {"problem_id", "text", "source", "kind"}; kind is "correct" or
    a bug kind, drawn with P(correct) = correct_fraction, bugs uniformly."""
    if not 0.0 <= correct_fraction <= 1.0:
        raise ValueError(f"correct_fraction={correct_fraction} must be in [0, 1]")
    rng = np.random.default_rng(seed)
    records = []
    for dp in problems:
        for _ in range(per_problem):
            kind = "correct"
            code = dp.solution
            if rng.random() >= correct_fraction:
                for k in rng.permutation(BUG_KINDS):
                    bug = buggy_solution(dp, str(k))
                    if bug is not None:
                        kind, code = str(k), bug
                        break
            style = _STYLES[_ri(rng, 0, len(_STYLES) - 1)]
            records.append({"problem_id": dp.problem.id, "text": style.format(code=code),
                            "source": source, "kind": kind})
    return records
