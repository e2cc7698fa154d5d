"""From what one sandbox run left behind to a verdict: the outcome rules, in one pure function.

Only the test process's report can say a case passed; anything missing (the candidate exited,
was killed, sent garbage; the test process died) counts as failed. The parent's own observations
(wall-clock timeout, a CPU-limit kill) come first. docs/sandbox.md lists the outcomes in order.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import Literal

from megatron_rrtf.sandbox.case_plan import CasePlan
from megatron_rrtf.sandbox.wire import messages_in

logger = logging.getLogger(__name__)

Outcome = Literal["passed", "failed", "error", "timeout", "syntax_error"]


@dataclass(frozen=True)
class ExecutionResult:
    """The verdict on one program."""

    outcome: Outcome
    tests_passed: int
    tests_total: int
    failed_test: str | None
    """Source of the first failing test case (or failing set-up statement)."""
    error_type: str | None
    """Exception class name: of the load error (outcome "error") or of the failing test."""
    duration_s: float
    output: str
    """stdout+stderr of both processes, truncated to max_output_bytes."""


@dataclass
class Observed:
    """What the parent saw of one run: the test process's report bytes, the output, whether
    the wall clock ran out, and the test process's exit status (None if not waited for)."""

    report: bytes
    output: bytes
    output_dropped: int
    timed_out: bool
    tests_rc: int | None


def first_failure(plan: CasePlan, cases: dict[int, dict]) -> tuple[str | None, str | None]:
    for index, step in enumerate(plan.steps):
        if not step.is_case:
            continue
        verdict = cases.get(index)
        if verdict is None:
            return step.source, None
        if not verdict.get("passed"):
            return step.source, verdict.get("error_type")
    return None, None


def decide(plan: CasePlan, seen: Observed) -> tuple[Outcome, int, str | None, str | None]:
    """(outcome, tests_passed, failed_test, error_type) from the test process's report and what
    the parent observed. Only the report says a case passed; anything missing counts as failed."""
    messages = messages_in(seen.report)
    for message in messages:
        if message.get("notes"):
            logger.debug("sandbox set-up notes: %s", message["notes"])
    cases = {m["case"]: m for m in messages if type(m.get("case")) is int}
    passed = sum(1 for i, step in enumerate(plan.steps)
                 if step.is_case and cases.get(i, {}).get("passed") is True)
    failed_test, error_type = first_failure(plan, cases)
    cpu_killed = (seen.tests_rc == -signal.SIGXCPU
                  or any(m.get("candidate_exit") == "cpu_limit" for m in messages))
    if seen.timed_out or cpu_killed:
        return "timeout", passed, failed_test, None
    done = any(m.get("done") for m in messages)
    fate = next((m["candidate_exit"] for m in messages
                 if type(m.get("candidate_exit")) is str), None)
    for message in messages:
        if "load_error" in message:
            error_type = str(message["load_error"])
            if error_type == "CandidateExited" and fate:  # e.g. "CandidateExited (signal 9)"
                error_type += f" ({fate})"
            return "error", passed, None, error_type
        if "missing_entry" in message:
            return "error", passed, None, "NameError"
        if "setup_error" in message:
            index = message["setup_error"]
            source = plan.steps[index].source if type(index) is int and 0 <= index < len(plan.steps) else None
            return "failed", passed, source, message.get("error_type")
    if not done:
        logger.warning("test process ended without a report (exit %s)", seen.tests_rc)
        return "error", passed, failed_test, "HarnessError"
    if plan.num_cases and passed == plan.num_cases:
        return "passed", passed, None, None
    return "failed", passed, failed_test, error_type
