"""Split a test script into test cases (pure, standard library only).

Two forms are accepted:
(a) top-level statements, e.g. `assert add(1, 2) == 3`;
(b) HumanEval style, `def check(candidate): assert ...`, run as `check(<entry_point>)`.

A *test case* is a statement that is an `assert` or contains one (so `for x in xs: assert f(x)`
counts as one case), taken from the top level and, in form (b), from the direct body of `check`.
Every other statement is *set-up* and runs in order between the cases. The parent process and the
test process both use this function, so the parent knows `tests_total` even when the test process
never reports.
"""

from __future__ import annotations

import ast
import textwrap
import threading
from dataclasses import dataclass

_PARSE_LOCK = threading.Lock()
"""CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not per thread: two
threads in ast.parse at once (a thread switch inside it, e.g. a GC finalizer running Python
code) raise "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905 and
relatives). `run_many` plans tests from a thread pool, so parsing is serialised here."""


@dataclass(frozen=True)
class Step:
    """One statement of the test script, compiled on its own."""

    source: str
    """The statement's source text (dedented)."""
    is_case: bool
    """True for a test case (contains an assert); False for set-up."""
    in_check: bool
    """True for statements of `check`'s body (they run with `candidate` bound)."""


def _is_case(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False  # defining a function runs none of its asserts
    return any(isinstance(node, ast.Assert) for node in ast.walk(stmt))


def _segment(tests: str, stmt: ast.stmt) -> str:
    text = ast.get_source_segment(tests, stmt, padded=True) or ast.unparse(stmt)
    return textwrap.dedent(text)


@dataclass(frozen=True)
class CasePlan:
    """The ordered steps of a test script and, in form (b), the name `check` binds the entry to."""

    steps: tuple[Step, ...]
    check_param: str | None

    @property
    def num_cases(self) -> int:
        return sum(step.is_case for step in self.steps)


def split_tests(tests: str, entry_point: str | None) -> CasePlan:
    """Plan a test script; raises SyntaxError if `tests` does not parse.

    Form (b) applies when `entry_point` is given and the script defines a top-level
    `check(candidate)`: the module's other top-level statements run first (as set-up or cases),
    then `check`'s body with `candidate` bound to the entry point.
    """
    with _PARSE_LOCK:
        module = ast.parse(tests)
    check = None
    if entry_point is not None:
        for stmt in module.body:
            if isinstance(stmt, ast.FunctionDef) and stmt.name == "check":
                check = stmt
    steps = [Step(_segment(tests, s), _is_case(s), False) for s in module.body if s is not check]
    param = None
    if check is not None:
        if len(check.args.args) != 1:
            raise SyntaxError("check() must take exactly one parameter (the candidate)")
        param = check.args.args[0].arg
        steps += [Step(_segment(tests, s), _is_case(s), True) for s in check.body]
    return CasePlan(tuple(steps), param)
