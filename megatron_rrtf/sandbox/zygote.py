"""A fork server for the sandbox: one small, single-threaded process that has imported the
sandbox's child code once and forks a fresh test process per program on request (which forks
the candidate process in turn). Starting a Python interpreter per process cost ~60 ms of CPU; a
fork costs ~1 ms.

Why not fork the caller: the caller is multi-threaded (thread pool, torch); forking it copies
locks held by other threads. The zygote has no threads and holds nothing but its control socket,
which every forked child closes (with every other descriptor it was not given) before running
its role. Nothing a candidate runs can reach the zygote.

Protocol over an AF_UNIX SOCK_SEQPACKET pair, one JSON object per packet:
  parent -> zygote  {"spawn": id, "role": "run", "config": {...}, "targets": [fd...]}
                    with the descriptors (SCM_RIGHTS) to install at those numbers in the child;
                    {"kill": id, "uids": [...]}: SIGKILL the child's process group (only while
                    it is unreaped, so never a recycled pid) and, as root, every process of
                    those uids (processes that left the group). Not root, when a child ends
                    other than by exiting 0, or the parent goes, every process left in the
                    child's session (the candidate's own process group) is killed too.
  zygote -> parent  {"ready": pid} once, when set up; {"exited": id, "status": raw wait status}.
The child side (everything above "the parent's end") uses the standard library only.
"""

from __future__ import annotations

import atexit
import fcntl
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from pathlib import Path

from megatron_rrtf.errors import SandboxError

_MAX_FDS = 16
READY_TIMEOUT_S = 120.0
"""How long the parent waits for a new zygote to say it is ready (seconds on a loaded machine)."""
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect",
           "string", "random", "hashlib", "fractions", "copy", "statistics", "decimal")
"""Standard-library modules benchmark programs and tests import most (HumanEval: typing, math)."""


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid`: kill(-1) from that uid reaches exactly those."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def _session_of(pid: str) -> int | None:
    """The session of a live process (None once it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X") else int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def _kill_sessions(sessions: set[int], patience_s: float = 2.0) -> None:
    """SIGKILL every live process of these sessions, round after round until none is left (a
    fork bomb adds some). A session's id is the pid of its leader, a test process: call only
    while that child is unreaped, so the id cannot have been reused. Not root, this is what ends
    the candidate's own process group where no pid namespace ends it (as root, the uid sweep)."""
    deadline = time.monotonic() + patience_s
    while True:
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or _session_of(entry) not in sessions:
                continue
            try:
                pidfd = os.pidfd_open(int(entry))
            except OSError:
                continue
            try:
                if _session_of(entry) in sessions:  # still the process the pidfd names
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    found = True
            except OSError:
                pass
            finally:
                os.close(pidfd)
        if not found or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def _become_child(role: str, config: dict, fds: list[int], targets: list[int]) -> None:
    """In the forked child: own session, descriptors in place, all others closed, run the role."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        os.environ.clear()  # the zygote was started with an empty environment already
        os.environ.update(config.get("env", {}))
        from megatron_rrtf.sandbox import confinement

        confinement.die_with_parent()
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # clear of every target
        for fd, target in zip(moved, targets):
            os.dup2(fd, target, inheritable=True)
        for fd in set(range(max(targets) + 1)) - set(targets):  # e.g. a received original
            try:
                os.close(fd)
            except OSError:
                pass
        os.closerange(max(targets) + 1, 1 << 16)
        if role != "run":
            raise ValueError(f"unknown sandbox role {role!r}")
        from megatron_rrtf.sandbox.judge import main
        main(config)
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote loop
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(70)
    os._exit(0)


def serve(config: dict) -> None:
    """The zygote's loop: spawn, kill, reap; exits (killing its children) when the parent goes."""
    from megatron_rrtf.sandbox import candidate, confinement, judge  # noqa: F401

    for name in PRELOAD:  # imported once here instead of in every candidate and test process
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.freeze()  # keep the children's garbage collector off the zygote's pages (no COW copies)

    # No PR_SET_PDEATHSIG here: it fires when the *thread* that started us exits (a thread-pool
    # worker, say). The parent's death shows as end-of-file on the control socket instead.
    root = os.geteuid() == 0  # before shared_view: inside a user namespace we would read 0
    for note in confinement.shared_view(root=root, hidden=config["hidden"],
                                        reachable=config["reachable"]):
        print(f"sandbox: {note}", file=sys.stderr, flush=True)
    # A test process exits before its candidate, which would then be the host init's to reap;
    # here, with init slow to reap, the zombies ate the next runs' RLIMIT_NPROC of that uid.
    confinement.adopt_orphans()
    control = socket.socket(fileno=config["control_fd"])
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # poll, not select: the control descriptor keeps the number it had in the parent, which is
    # above FD_SETSIZE (1024) in a long-lived parent with many open files (select raises then).
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    control.send(json.dumps({"ready": os.getpid()}).encode())
    children: dict[int, int] = {}  # pid -> request id
    by_id: dict[int, int] = {}     # request id -> pid
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            events = []
        ready = {fd for fd, _ in events}
        if wake_r in ready:
            os.read(wake_r, 4096)
        while True:  # our test processes, and the orphans we adopted
            try:  # WNOWAIT: look first, so the session id stays reserved while it is cleaned up
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if ended is None:
                break
            pid = ended.si_pid
            if (not root and pid in children
                    and (ended.si_code != os.CLD_EXITED or ended.si_status != 0)):
                _kill_sessions({pid})  # it did not end its candidate's group itself
            _, status = os.waitpid(pid, 0)
            request = children.pop(pid, None)
            if request is not None:
                by_id.pop(request, None)
                control.send(json.dumps({"exited": request, "status": status}).encode())
        if control.fileno() not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, _MAX_FDS)
        except OSError:
            data, fds = b"", []
        if not data:  # the parent is gone: take every child with us
            for pid in children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not root and children:
                _kill_sessions(set(children))
            os._exit(0)
        message = json.loads(data)
        if "spawn" in message:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _become_child(message["role"], message["config"], fds, message["targets"])
            for fd in fds:
                os.close(fd)
            children[pid] = message["spawn"]
            by_id[message["spawn"]] = pid
        elif "kill" in message:
            pid = by_id.get(message["kill"])
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            if root:
                for uid in message.get("uids") or []:
                    _kill_uid(int(uid))


def main(config: dict) -> None:
    """Entry point of the zygote process (see ZygoteClient)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    serve(config)


# ------------------------------------------------------------------ the parent's end


class Child:
    """A process the zygote forked: its exit status arrives through the client's reader."""

    def __init__(self, client: ZygoteClient, request: int):
        self._client, self.request = client, request
        self._done = threading.Event()
        self.returncode: int | None = None

    def _exited(self, status: int | None) -> None:
        if status is None:
            self.returncode = -signal.SIGKILL
        elif os.WIFSIGNALED(status):
            self.returncode = -os.WTERMSIG(status)
        else:
            self.returncode = os.WEXITSTATUS(status)
        self._done.set()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (negative signal number if killed), or None if still running."""
        self._done.wait(timeout)
        return self.returncode

    def kill(self, uids: list[int] | None = None) -> None:
        """SIGKILL its process group (and, as root, every process of `uids`)."""
        message = {"kill": -1 if self._done.is_set() else self.request, "uids": uids or []}
        if message["kill"] == -1 and not uids:
            return
        try:
            self._client.send(message)
        except OSError:  # the zygote is gone, and it killed its children on the way out
            pass


class ZygoteClient:
    """Starts the zygote and talks to it; thread-safe. One per process (see `shared_client`)."""

    def __init__(self, boot_command: list[str], env: dict[str, str], config: dict):
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {**config, "control_fd": child_sock.fileno()}
        self._proc = subprocess.Popen(boot_command + [json.dumps(config)],
                                      pass_fds=(child_sock.fileno(),), env=env, cwd="/",
                                      stdin=subprocess.DEVNULL, close_fds=True)
        child_sock.close()
        self._sock = parent_sock
        self._lock = threading.Lock()
        self._children: dict[int, Child] = {}
        self._next = 0
        self.alive = True
        self._ready = threading.Event()
        threading.Thread(target=self._read, name="sandbox-zygote", daemon=True).start()
        # Wait until it has imported everything and set up its namespaces, so that its start-up
        # (seconds on a loaded machine) never counts against the first program's wall clock.
        if not self._ready.wait(READY_TIMEOUT_S) or not self.alive:
            self.close()
            raise OSError(f"the sandbox zygote did not start (exit status {self._proc.returncode})")

    def send(self, message: dict, fds: list[int] = ()) -> None:
        data = json.dumps(message).encode()
        with self._lock:
            if not self.alive:
                raise OSError("the sandbox zygote has exited")
            socket.send_fds(self._sock, [data], list(fds))

    def spawn(self, role: str, config: dict, fds: dict[int, int]) -> Child:
        """Fork a child running `role` with descriptor fds[target] installed at each target."""
        with self._lock:
            request = self._next
            self._next += 1
            child = Child(self, request)
            self._children[request] = child
        targets = sorted(fds)
        self.send({"spawn": request, "role": role, "config": config, "targets": targets},
                  [fds[t] for t in targets])
        return child

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            if "ready" in message:
                self._ready.set()
                continue
            with self._lock:
                child = self._children.pop(message["exited"], None)
            if child is not None:
                child._exited(message["status"])
        with self._lock:
            self.alive = False
            orphans, self._children = list(self._children.values()), {}
        self._ready.set()
        for child in orphans:
            child._exited(None)

    def close(self) -> None:
        """Hang up; the zygote kills its children and exits."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# ------------------------------------------------------------------ one fork server per process

def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def hidden_dirs() -> list[str]:
    """Directories the candidate must not read: installed packages (datasets ship inside them),
    this checkout, home directories, world-writable scratch, plus $MRRTF_SANDBOX_HIDE (a
    ':'-separated list). Never an ancestor of the standard library the candidate needs. Computed
    when a fork server starts (never at import), so it sees the environment of that moment."""
    candidates = {p for p in sys.path if "site-packages" in p or "dist-packages" in p}
    candidates |= {_repo_root(), "/home", "/mnt", "/srv", "/dev/shm", "/var/tmp", "/run/lock"}
    candidates |= {p for p in os.environ.get("MRRTF_SANDBOX_HIDE", "").split(":") if p}
    keep = [os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")]
    hidden = []
    for path in sorted(candidates):
        real = os.path.realpath(path)
        if os.path.isdir(real) and not any(k == real or k.startswith(real + os.sep) for k in keep):
            hidden.append(real)
    return hidden


def reachable_dirs() -> list[str]:
    """The interpreter's own prefix must stay readable for the dropped uid (it may live in
    /root)."""
    return sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)})


def _boot_command() -> list[str]:
    boot = (f"import sys; sys.path.insert(0, {_repo_root()!r}); import json; "
            "from megatron_rrtf.sandbox.zygote import main; main(json.loads(sys.argv[1]))")
    return [sys.executable, "-I", "-S", "-c", boot]


_SHARED_LOCK = threading.Lock()
_SHARED: tuple[int, ZygoteClient] | None = None


def shared_client() -> ZygoteClient:
    """This process's fork server, started on first use (again after a fork or if it died)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED[0] != os.getpid() or not _SHARED[1].alive:
            if _SHARED is not None and _SHARED[0] == os.getpid():
                logging.getLogger(__name__).warning(
                    "the sandbox fork server exited (status %s); starting a new one",
                    _SHARED[1]._proc.poll())
                _SHARED[1].close()  # it is gone already: this only releases our socket
            try:
                client = ZygoteClient(_boot_command(), {"PATH": "/usr/bin:/bin"},
                                      {"hidden": hidden_dirs(), "reachable": reachable_dirs()})
            except OSError as exc:
                raise SandboxError(f"cannot start the sandbox fork server: {exc}") from exc
            if _SHARED is None:
                atexit.register(_close_shared)
            _SHARED = (os.getpid(), client)
        return _SHARED[1]


def _close_shared() -> None:
    if _SHARED is not None and _SHARED[0] == os.getpid():
        _SHARED[1].close()
