"""The trusted side of the sandbox: runs the test script and decides each test case.

Forked by the sandbox's zygote, reading {"program", "tests"} as one frame on stdin. While still
privileged it forks the candidate process (candidate.launch), then confines itself. The
candidate program never runs here. Every name the program defines becomes a
stand-in: calling it sends the (plain-data) arguments to the candidate process and rebuilds the
plain-data result here, so `==`, `assert` and every other operation of the test runs on built-in
objects, in this process, with this process's builtins. The verdict of each case is written to a
report pipe that only this process and the parent hold.

Standard library only.
"""

from __future__ import annotations

import builtins
import importlib
import os
import signal
import sys
import time
from typing import Any

from megatron_rrtf.sandbox import confinement
from megatron_rrtf.sandbox.candidate import describe_exit, launch
from megatron_rrtf.sandbox.case_plan import CasePlan, split_tests
from megatron_rrtf.sandbox.wire import (
    WireError,
    decode_value,
    encode_value,
    read_message,
    write_message,
)

UNIMPORTABLE = frozenset({"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"})
"""Standard-library modules with side effects at import; never imported on a program's say-so."""


class CandidateRaised(Exception):
    """The candidate's function raised an exception that is not a built-in one."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


class CandidateExited(Exception):
    """The candidate process is gone (it exited, was killed, or hit a limit)."""


class ProtocolError(Exception):
    """The candidate process sent something that is not a well-formed reply."""


CONTROL_FLOW_EXCEPTIONS = frozenset({"StopIteration", "StopAsyncIteration", "GeneratorExit"})
"""Never re-raised as themselves: a StopIteration from the candidate would end the test's own
`map`/`zip` iteration early and let `assert list(map(f, xs)) == []` pass."""


def _rebuild_exception(type_name: str, message: str) -> BaseException:
    cls = getattr(builtins, type_name, None)
    if (isinstance(cls, type) and issubclass(cls, Exception)
            and type_name not in CONTROL_FLOW_EXCEPTIONS):
        try:
            return cls(message)
        except Exception:  # e.g. UnicodeDecodeError needs five arguments
            pass
    return CandidateRaised(type_name, message)


class Channel:
    """The two pipes to the candidate process."""

    def __init__(self, req_fd: int, resp_fd: int):
        self.req_fd, self.resp_fd = req_fd, resp_fd
        self.dead = False

    def receive(self) -> dict:
        if self.dead:
            raise CandidateExited("the candidate process has exited")
        try:
            message = read_message(self.resp_fd)
        except WireError as exc:
            self.dead = True
            raise ProtocolError(str(exc)) from None
        if message is None:
            self.dead = True
            raise CandidateExited("the candidate process has exited")
        return message

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        request = {"call": name, "args": encode_value(args), "kwargs": encode_value(kwargs)}
        if self.dead:
            raise CandidateExited("the candidate process has exited")
        try:
            write_message(self.req_fd, request)
        except OSError:
            self.dead = True
            raise CandidateExited("the candidate process has exited") from None
        reply = self.receive()
        if "return" in reply:
            try:
                return decode_value(reply["return"])
            except WireError as exc:
                raise ProtocolError(str(exc)) from None
        fields = reply.get("raise")
        if type(fields) is list and len(fields) == 2 and all(type(f) is str for f in fields):
            raise _rebuild_exception(fields[0], fields[1])
        raise ProtocolError("reply is neither a return nor a raise")


class CandidateFunction:
    """Stands in for a callable the program defines; each call is a round trip."""

    def __init__(self, channel: Channel, name: str):
        self._channel, self.__name__ = channel, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"


def build_namespace(channel: Channel, names: dict) -> dict[str, Any]:
    """The test script's globals: stand-ins for the program's callables, its plain values, and
    the standard-library modules it imported (imported here, by name)."""
    namespace: dict[str, Any] = {"__name__": "__tests__", "__builtins__": builtins}
    for name, desc in names.items():
        if type(name) is not str or type(desc) is not list or not desc:
            continue
        kind = desc[0]
        if kind == "callable":
            namespace[name] = CandidateFunction(channel, name)
        elif kind == "value" and len(desc) == 2:
            try:
                namespace[name] = decode_value(desc[1])
            except WireError:
                continue
        elif kind == "module" and len(desc) == 2 and type(desc[1]) is str:
            top = desc[1].split(".")[0]
            if top in sys.stdlib_module_names and top not in UNIMPORTABLE:
                try:
                    namespace[name] = importlib.import_module(desc[1])
                except ImportError:
                    continue
    return namespace


def _error_type(exc: BaseException) -> str | None:
    if isinstance(exc, AssertionError):
        return None
    if isinstance(exc, CandidateRaised):
        return exc.type_name
    return type(exc).__name__


def run_tests(plan: CasePlan, entry_point: str | None, channel: Channel, report) -> None:
    """Run the plan against the candidate; report load, each case, and the end."""
    notes = channel.receive()
    report({"notes": notes.get("setup", [])})
    first = channel.receive()
    if "load_error" in first:
        fields = first["load_error"]
        report({"load_error": str(fields[0]) if isinstance(fields, list) and fields else "?"})
        return
    names = first.get("loaded")
    if type(names) is not dict:
        raise ProtocolError("first reply is neither loaded nor load_error")
    namespace = build_namespace(channel, names)
    report({"loaded": True})
    bound = False
    for index, step in enumerate(plan.steps):
        if step.in_check and not bound:
            if not isinstance(namespace.get(entry_point), CandidateFunction):
                report({"missing_entry": entry_point})
                return
            namespace[plan.check_param] = namespace[entry_point]
            bound = True
        try:
            exec(compile(step.source, f"<test step {index}>", "exec"), namespace)
        except BaseException as exc:  # noqa: BLE001 - every failure of a step is a verdict
            key = "case" if step.is_case else "setup_error"
            report({key: index, "passed": False, "error_type": _error_type(exc)})
            if not step.is_case:
                return
            continue
        if step.is_case:
            report({"case": index, "passed": True, "error_type": None})


def _kill_candidate_group(pid: int) -> None:
    """SIGKILL the candidate's process group: what it started, where no pid namespace ends it
    (as root the uid drop makes this a refused no-op, and the namespace does it). Call before
    reaping the candidate: until then its group's id cannot have been reused."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _candidate_fate(pid: int, cpu_limit: float, wait_s: float) -> str | None:
    """How the candidate ended ("cpu_limit", "signal N", "exit N"), if it did within wait_s;
    its process group is killed either way."""
    deadline = time.monotonic() + wait_s
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT  # leave it unreaped until its group is killed
    while (exited := os.waitid(os.P_PID, pid, flags)) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    _kill_candidate_group(pid)
    if exited is None:
        return None
    _, status, usage = os.wait4(pid, 0)
    return describe_exit(status, usage.ru_utime + usage.ru_stime, cpu_limit)


def main(config: dict) -> None:
    """Read program and tests, fork the candidate, confine this process, run the tests, report;
    exit 0 unless the harness broke. The candidate's process group is killed before "done", and
    the candidate dies with this process in any case (PDEATHSIG)."""
    job = read_message(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the candidate inherits a closed stdin
    os.close(devnull)
    limits, root = config["limits"], config["root"]
    report_fd = config["report_fd"]
    candidate_config = {**config, "uid": config["candidate_uid"], "gid": config["candidate_uid"],
                        "nproc": limits["max_processes"]}
    if not root:  # RLIMIT_NPROC counts every task of the real uid, not just ours
        candidate_config["nproc"] += confinement.count_user_tasks(os.getuid())
    pid, req_fd, resp_fd = launch(job["program"], candidate_config)
    confinement.set_resource_limits(
        cpu_s=limits["cpu_s"], memory_bytes=limits["memory_bytes"],
        file_size_bytes=1 << 20, max_processes=limits["max_processes"] if root else None)
    if root:
        confinement.drop_privileges(config["uid"], config["uid"])
    confinement.not_dumpable()
    confinement.die_with_parent()
    confinement.no_new_privileges()
    os.chdir("/")
    plan = split_tests(job["tests"], config["entry_point"])
    channel = Channel(req_fd, resp_fd)
    try:
        run_tests(plan, config["entry_point"], channel, lambda m: write_message(report_fd, m))
    except (CandidateExited, ProtocolError) as exc:
        write_message(report_fd, {"load_error": type(exc).__name__})
    os.close(channel.req_fd)
    if channel.dead:  # it vanished mid-run: was it the CPU limit?
        fate = _candidate_fate(pid, float(limits["cpu_s"]), 3.0)
        write_message(report_fd, {"candidate_exit": fate})
    else:
        _kill_candidate_group(pid)
    sys.stdout.flush()  # before "done": the parent stops reading output when the report ends
    sys.stderr.flush()
    write_message(report_fd, {"done": True})
    os._exit(0)
