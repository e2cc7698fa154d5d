"""The untrusted side of the sandbox: the candidate process, forked by the test process, confined
before the program's first line, then loading the program and answering calls with plain data.

Runs as root only up to `drop_privileges`; everything after that line, including
this module's own serving loop, is assumed to be under the candidate's control: the candidate can
rewrite the loop, the encoder, or the pipe. That is fine, because all it can ever send is plain
data to the test process, which decides pass/fail itself (see judge.py).

Standard library only.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import signal
import sys
import traceback
import types
from typing import Any

from megatron_rrtf.sandbox import confinement, wire


def _describe(value: Any) -> list:
    if isinstance(value, types.ModuleType):
        return ["module", str(getattr(value, "__name__", ""))]
    if callable(value):
        return ["callable"]
    try:
        return ["value", wire.encode_value(value)]
    except (wire.WireError, RecursionError):
        return ["opaque"]


def _exception_fields(exc: BaseException) -> list[str]:
    try:
        message = str(exc)[:2000]
    except Exception:  # a candidate exception whose __str__ raises
        message = "<unprintable>"
    return [type(exc).__name__, message]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the candidate may have replaced or closed them
            pass


def serve(program: str, req_fd: int, resp_fd: int, notes: list[str]) -> None:
    """Load `program`, tell the test process which globals it defines, then answer calls."""
    wire.write_message(resp_fd, {"setup": notes})
    namespace: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(program, "<candidate>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - SystemExit at load is a load error too
        traceback.print_exc()
        _flush()
        wire.write_message(resp_fd, {"load_error": _exception_fields(exc)})
        return
    _flush()
    names = {k: _describe(v) for k, v in list(namespace.items()) if not k.startswith("__")}
    wire.write_message(resp_fd, {"loaded": names})
    while True:
        request = wire.read_message(req_fd)
        if request is None:
            return
        try:
            function = namespace[request["call"]]
            args = wire.decode_value(request["args"])
            kwargs = wire.decode_value(request["kwargs"])
            result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test side as the call's error
            _flush()
            wire.write_message(resp_fd, {"raise": _exception_fields(exc)})
            continue
        _flush()
        try:
            reply = {"return": wire.encode_value(result)}
        except (wire.WireError, RecursionError) as exc:
            reply = {"raise": ["UnencodableResult", str(exc)]}
        wire.write_message(resp_fd, reply)


def describe_exit(status: int, cpu_used: float, cpu_limit: float) -> str:
    """"cpu_limit" when the candidate was killed for CPU, else "signal N" or "exit N"."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_limit):
            return "cpu_limit"
        return f"signal {sig}"
    return f"exit {os.WEXITSTATUS(status)}"


def _confine(config: dict, private: bool) -> list[str]:
    """In the forked candidate, still root: own namespaces, /proc, /tmp, limits, then drop."""
    limits, root = config["limits"], config["root"]
    notes: list[str] = []
    if private:
        confinement.unshare(confinement.CLONE_NEWNS | confinement.CLONE_NEWIPC
                            | confinement.CLONE_NEWUTS)
        owner = (config["uid"], config["gid"]) if root else (0, 0)
        notes += confinement.private_proc_and_tmp(tmp_bytes=limits["tmp_bytes"], owner=owner)
        os.chdir("/tmp")
    else:
        os.chdir(config["workdir"])
    confinement.set_resource_limits(
        cpu_s=limits["cpu_s"], memory_bytes=limits["memory_bytes"],
        file_size_bytes=limits["file_size_bytes"], max_processes=config["nproc"])
    if root:
        confinement.drop_privileges(config["uid"], config["gid"])
    elif private:
        confinement.lock_mounts()
    confinement.die_with_parent()
    confinement.no_new_privileges()
    # A process group of its own, so that kill(0) / killpg(own group) reach only the
    # candidate's processes and never the test process, which shares its uid when not root.
    # Last, so that until PDEATHSIG is armed the test process's group still takes it along.
    os.setpgid(0, 0)
    return notes


def launch(program: str, config: dict) -> tuple[int, int, int]:
    """Fork the candidate process from the (still privileged) test process; returns
    (pid, request write end, response read end). The child keeps only stdin (/dev/null),
    stdout/stderr and its two pipe ends: every other descriptor, the report pipe included, is
    closed before the program is read. With a new pid namespace the child is its pid 1: when it
    exits, everything it started dies, and it cannot see or signal anything outside. It runs in
    a process group of its own (the test process kills that group when it is done)."""
    notes: list[str] = []
    try:
        confinement.unshare(confinement.CLONE_NEWPID)
        private = True
    except OSError as exc:
        private = False
        notes.append(f"pid/mount namespaces refused ({exc.strerror}): the candidate sees the "
                     f"host's processes and shares a working directory")
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(req_r)
        os.close(resp_w)
        return pid, req_w, resp_r
    try:
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (req_r, resp_w)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)
        os.closerange(5, 1 << 16)  # the report pipe and the test side's pipe ends included
        notes += _confine(config, private)
    except OSError as exc:  # never run the candidate half-confined
        print(f"sandbox set-up failed: {exc}", file=sys.stderr)
        os._exit(3)
    serve(program, 3, 4, notes)
    _flush()
    os._exit(0)
