"""The untrusted side of the sandbox: a launcher that confines itself, then loads the candidate
program and answers calls from the test process with plain data.

Started by megatron_rrtf.eval.sandbox as `python -I -S -c <boot> <config json>`, reading the
program on stdin. Runs as root only up to `drop_privileges`; everything after that line, including
this module's own serving loop, is assumed to be under the candidate's control: the candidate can
rewrite the loop, the encoder, or the pipe. That is fine, because all it can ever send is plain
data to the test process, which decides pass/fail itself (see test_process).

Standard library only.
"""

from __future__ import annotations

import builtins
import os
import signal
import sys
import traceback
import types
from typing import Any

from megatron_rrtf.eval import confinement
from megatron_rrtf.eval.wire import (
    WireError,
    decode_value,
    encode_value,
    read_message,
    write_message,
)

EXIT_CPU_LIMIT = 124
"""Launcher exit code when the candidate was killed for exceeding its CPU limit."""


def _describe(value: Any) -> list:
    if isinstance(value, types.ModuleType):
        return ["module", str(getattr(value, "__name__", ""))]
    if callable(value):
        return ["callable"]
    try:
        return ["value", encode_value(value)]
    except (WireError, RecursionError):
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
    write_message(resp_fd, {"setup": notes})
    namespace: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(program, "<candidate>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - SystemExit at load is a load error too
        traceback.print_exc()
        _flush()
        write_message(resp_fd, {"load_error": _exception_fields(exc)})
        return
    _flush()
    names = {k: _describe(v) for k, v in list(namespace.items()) if not k.startswith("__")}
    write_message(resp_fd, {"loaded": names})
    while True:
        request = read_message(req_fd)
        if request is None:
            return
        try:
            function = namespace[request["call"]]
            args = decode_value(request["args"])
            kwargs = decode_value(request["kwargs"])
            result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test side as the call's error
            _flush()
            write_message(resp_fd, {"raise": _exception_fields(exc)})
            continue
        _flush()
        try:
            reply = {"return": encode_value(result)}
        except (WireError, RecursionError) as exc:
            reply = {"raise": ["UnencodableResult", str(exc)]}
        write_message(resp_fd, reply)


def _exit_code(status: int, cpu_used: float, cpu_limit: float) -> int:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_limit):
            return EXIT_CPU_LIMIT
        return 128 + sig
    code = os.WEXITSTATUS(status)
    return EXIT_CPU_LIMIT + 1 if code == EXIT_CPU_LIMIT else code


def main(config: dict) -> None:
    """Launcher: read the program, enter namespaces, fork the confined child, wait, exit."""
    program = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # stdin closed: reads see EOF at once
    os.close(devnull)
    req_fd, resp_fd = config["req_fd"], config["resp_fd"]
    limits, root = config["limits"], config["root"]
    notes: list[str] = []
    nproc = limits["max_processes"]
    if not root:  # RLIMIT_NPROC counts every task of the real uid, not just ours
        nproc += confinement.count_user_tasks(os.getuid())
    try:
        confinement.enter_private_namespaces()
        private = True
    except OSError as exc:
        private = False
        notes.append(f"pid/mount namespaces refused ({exc.strerror}): the candidate sees the "
                     f"host's processes and shares a working directory")
    pid = os.fork()
    if pid:  # launcher: keep no pipe end, wait, report the child's fate as the exit code
        os.close(req_fd)
        os.close(resp_fd)
        _, status, usage = os.wait4(pid, 0)
        cpu_used = usage.ru_utime + usage.ru_stime
        os._exit(_exit_code(status, cpu_used, float(limits["cpu_s"])))
    try:
        if private:
            owner = (config["uid"], config["gid"]) if root else (0, 0)
            notes += confinement.private_proc_and_tmp(tmp_bytes=limits["tmp_bytes"], owner=owner)
            os.chdir("/tmp")
        else:
            os.chdir(config["workdir"])
        confinement.set_resource_limits(
            cpu_s=limits["cpu_s"], memory_bytes=limits["memory_bytes"],
            file_size_bytes=limits["file_size_bytes"], max_processes=nproc)
        if root:
            confinement.drop_privileges(config["uid"], config["gid"])
        elif private:
            confinement.lock_mounts()
        confinement.die_with_parent()
        confinement.no_new_privileges()
    except OSError as exc:  # never run the candidate half-confined
        print(f"sandbox set-up failed: {exc}", file=sys.stderr)
        os._exit(3)
    serve(program, req_fd, resp_fd, notes)
    _flush()
    os._exit(0)
