"""Run an untrusted program against its tests and return a verdict the program cannot forge.

Design (docs/sandbox.md has the threat model):
- the candidate program runs in its own process ("candidate process"), confined before its first
  line runs: new network/pid/mount/ipc/uts namespaces, read-only filesystem with a fresh tmpfs as
  its directory, project and package directories hidden, an unprivileged uid of its own (as
  root), rlimits on CPU, memory, file size and processes, scrubbed environment, stdin closed;
- the tests run in another process ("test process") that never executes candidate code: each
  name the program defines is a stand-in that ships plain-data arguments over a pipe and gets a
  plain-data result back (megatron_rrtf.sandbox.wire), so every comparison and assert runs here;
- the test process reports each case's verdict on a pipe the candidate does not hold; the parent
  (this module) combines that report with what it observed itself (verdict.py) (compile errors, wall-clock
  timeout, CPU-limit kills) into an ExecutionResult.
Processes: a fork server (zygote.py) forks one test process per program; while still privileged
the test process forks the candidate process (pid 1 of a new pid namespace), then both drop to
their own uids.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from megatron_rrtf.errors import DataError, SandboxError
from megatron_rrtf.sandbox.case_plan import split_tests
from megatron_rrtf.sandbox.verdict import ExecutionResult, Observed, decide
from megatron_rrtf.sandbox.wire import messages_in, write_message
from megatron_rrtf.sandbox.zygote import shared_client

logger = logging.getLogger(__name__)

_OUTPUT_DRAIN_FACTOR = 64
"""Output beyond max_output_bytes is read and dropped up to this many times the cap, then the
pipe is closed (a program that keeps printing then fails on EPIPE)."""
_UID_BASE = 100_000
"""Sandboxes run as root get uids from here up: unique per (parent pid, concurrent slot)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits; memory and processes apply to each of the two sandbox processes."""

    timeout_s: float = 10.0
    """Wall clock from the moment the confined candidate starts loading the program (set-up
    before that is trusted and bounded separately); everything is killed after it."""
    cpu_s: float = 10.0
    """CPU seconds of each process (RLIMIT_CPU, rounded up to whole seconds)."""
    memory_mb: int = 1024
    """Address space of each process (RLIMIT_AS)."""
    file_size_mb: int = 16
    """Largest file a process may write (RLIMIT_FSIZE); the private /tmp holds twice this."""
    max_processes: int = 32
    """Processes+threads of the candidate's uid (RLIMIT_NPROC)."""
    max_output_bytes: int = 65536
    """stdout+stderr kept in ExecutionResult.output."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "file_size_mb", "max_processes",
                     "max_output_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class Job:
    """One program and its tests, for run_many."""

    program: str
    tests: str
    entry_point: str | None = None
    key: str = ""


class _UidSlots:
    """Concurrent runs in this process each get a distinct pair of uids (candidate, tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._next = 0

    @contextmanager
    def acquire(self) -> Iterator[tuple[int, int]]:
        with self._lock:
            slot = self._free.pop() if self._free else self._next
            if slot == self._next:
                self._next += 1
        if slot >= 1024:
            raise SandboxError("more than 1024 concurrent sandboxes in one process")
        uid = sandbox_uid_range().start + 2 * slot
        try:
            yield uid, uid + 1
        finally:
            with self._lock:
                self._free.append(slot)


_UID_SLOTS = _UidSlots()


def sandbox_uid_range() -> range:
    """The uids this process's sandboxes run as when it is root (for monitoring and tests)."""
    start = _UID_BASE + 2 * (os.getpid() % 1_000_000) * 1024
    return range(start, start + 2 * 1024)


_SETUP_TIMEOUT_S = 120.0
"""Bound on set-up (fork, namespaces, mounts, privilege drop) before the program's wall clock
starts; generous because a loaded machine can stretch it to seconds."""


class _HarnessFailure(Exception):
    """The sandbox machinery failed before the program could run (not the program's doing).
    `spawn`: the fork server could not be reached (re-raised as SandboxError if it persists)."""

    def __init__(self, message: str, spawn: bool = False):
        super().__init__(message)
        self.spawn = spawn


def _execute(program: str, tests: str, entry_point: str | None, limits: SandboxLimits,
             uids: tuple[int, int] | None, workdir: str | None) -> Observed:
    root = uids is not None
    child_limits = {
        "cpu_s": limits.cpu_s, "memory_bytes": limits.memory_mb << 20,
        "file_size_bytes": limits.file_size_mb << 20, "tmp_bytes": 2 * (limits.file_size_mb << 20),
        "max_processes": limits.max_processes,
    }
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "HOME": workdir or "/tmp", "TMPDIR": workdir or "/tmp"}
    out_r, out_w = os.pipe()
    rep_r, rep_w = os.pipe()
    in_r, in_w = os.pipe()
    config = {"report_fd": 5, "limits": child_limits, "root": root,
              "uid": uids[1] if root else None, "candidate_uid": uids[0] if root else None,
              "workdir": workdir, "env": env, "entry_point": entry_point}
    try:
        tester = shared_client().spawn("run", config, {0: in_r, 1: out_w, 2: out_w, 5: rep_w})
    except (OSError, SandboxError) as exc:
        for fd in (out_r, rep_r, in_w):
            os.close(fd)
        raise _HarnessFailure(f"cannot start sandbox processes: {exc}", spawn=True) from exc
    finally:
        for fd in (out_w, rep_w, in_r):
            os.close(fd)
    # The wall clock starts when T reports the candidate confined and about to load the program
    # (its first report message): set-up is trusted code, and on a loaded machine it can take
    # seconds that must not turn into a "timeout" verdict. Set-up itself is bounded separately.
    deadline = time.monotonic() + _SETUP_TIMEOUT_S
    started = False
    try:  # the test process reads this first thing, before any confinement
        write_message(in_w, {"program": program, "tests": tests})
    except OSError:  # it died during set-up; its exit status tells
        pass
    finally:
        os.close(in_w)

    report, output = bytearray(), bytearray()
    dropped, timed_out = 0, False
    cap = limits.max_output_bytes

    def take_output(data: bytes) -> None:
        nonlocal dropped
        room = max(0, cap - len(output))
        output.extend(data[:room])
        dropped += max(0, len(data) - room)

    out_open = True
    with selectors.DefaultSelector() as sel:
        sel.register(rep_r, selectors.EVENT_READ)
        sel.register(out_r, selectors.EVENT_READ)
        while True:  # until the test process closes its report, or the deadline
            now = time.monotonic()
            if now >= deadline:
                timed_out = started  # never started: a harness failure, not the program's fault
                break
            events = sel.select(timeout=deadline - now)
            if any(key.fd == rep_r for key, _ in events):
                data = os.read(rep_r, 1 << 16)
                report += data
                if not data:
                    break
                if not started:  # any report byte: T has heard from the confined candidate
                    started = True
                    deadline = time.monotonic() + limits.timeout_s
            if out_open and any(key.fd == out_r for key, _ in events):
                data = os.read(out_r, 1 << 16)
                take_output(data)
                if not data or dropped > _OUTPUT_DRAIN_FACTOR * cap:
                    sel.unregister(out_r)  # closed now: a writer still going gets EPIPE
                    os.close(out_r)
                    out_open = False
    os.close(rep_r)
    if out_open:
        # Everything the processes printed before the last verdict is already in the pipe (both
        # flush before replying/reporting): take it without waiting for them to exit.
        os.set_blocking(out_r, False)
        try:
            while len(output) < cap and (data := os.read(out_r, 1 << 16)):
                take_output(data)
        except BlockingIOError:
            pass
        os.close(out_r)
    # The candidate dies with the test process (PDEATHSIG, set before the test process can
    # proceed). When the run did not end cleanly, also kill every process of both uids.
    done = any(m.get("done") for m in messages_in(bytes(report)))
    tester.kill(list(uids) if root and (timed_out or not done) else None)
    # The exit status only matters when the report is incomplete (a CPU-limit kill reads as
    # "timeout"); otherwise the zygote reaps the test process in the background.
    tests_rc = tester.wait(30.0) if timed_out or not done else 0
    if not started:
        raise _HarnessFailure(f"the test process did not get the candidate started within "
                              f"{_SETUP_TIMEOUT_S:.0f} s (exit status {tests_rc}); output: "
                              f"{bytes(output[:500])!r}")
    return Observed(bytes(report), bytes(output), dropped, timed_out, tests_rc)


def _execute_confined(program: str, tests: str, entry_point: str | None,
                      limits: SandboxLimits) -> Observed:
    if os.geteuid() == 0:
        with _UID_SLOTS.acquire() as uids:
            return _execute(program, tests, entry_point, limits, uids, None)
    workdir = tempfile.mkdtemp(prefix="mrrtf-sandbox-")
    try:
        return _execute(program, tests, entry_point, limits, None, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_program(program: str, tests: str, entry_point: str | None = None,
                limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Run `program` against `tests` in the sandbox (see the module docstring).

    `tests` is top-level asserts, or HumanEval's `def check(candidate)` with `entry_point`.
    Raises DataError when the tests themselves do not parse or contain no assert.
    """
    try:
        plan = split_tests(tests, entry_point)
    except SyntaxError as exc:
        raise DataError(f"the tests do not parse: {exc}") from None
    if plan.num_cases == 0:
        raise DataError("the tests contain no assert, so nothing could ever fail: add asserts "
                        "(top level or in check(candidate))")
    start = time.monotonic()
    try:
        compile(program, "<candidate>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return ExecutionResult("syntax_error", 0, plan.num_cases, None, type(exc).__name__,
                               time.monotonic() - start, str(exc)[: limits.max_output_bytes])
    # A failure of the harness itself (fork server gone, test process dead without a report,
    # set-up that never finished) is not the program's doing: run it once more before reporting.
    for attempt in (1, 2):
        try:
            seen = _execute_confined(program, tests, entry_point, limits)
        except _HarnessFailure as exc:
            if attempt == 1:
                logger.warning("sandbox harness failure, running the program again: %s", exc)
                continue
            if exc.spawn:
                raise SandboxError(str(exc)) from exc
            logger.warning("sandbox harness failed twice: %s", exc)
            return ExecutionResult("error", 0, plan.num_cases, None, "HarnessError",
                                   time.monotonic() - start, str(exc)[: limits.max_output_bytes])
        outcome, passed, failed_test, error_type = decide(plan, seen)
        if error_type == "HarnessError" and attempt == 1:
            logger.warning("test process ended without a report (exit %s), running the program "
                           "again", seen.tests_rc)
            continue
        break
    output = seen.output.decode("utf-8", errors="replace")
    if seen.output_dropped:
        output += f"\n[... {seen.output_dropped} more bytes of output dropped]"
    return ExecutionResult(outcome, passed, plan.num_cases, failed_test, error_type,
                           time.monotonic() - start, output)


def run_many(jobs: Sequence[Job], workers: int | None = None,
             limits: SandboxLimits = SandboxLimits(), progress: bool = False
             ) -> list[ExecutionResult]:
    """run_program for each job, `workers` at a time (default: CPU count); results in job order."""
    workers = workers or os.cpu_count() or 1
    results: list[ExecutionResult | None] = [None] * len(jobs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="sandbox", unit="prog")

    def one(index: int) -> None:
        job = jobs[index]
        results[index] = run_program(job.program, job.tests, job.entry_point, limits)
        if bar is not None:
            bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(one, i) for i in range(len(jobs))]:
                future.result()
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]
