"""Kernel-level confinement for the sandbox's child processes (standard library + ctypes only).

Each function does one thing and is called by a child *before* it runs untrusted code:
resource limits, Linux namespaces (network, pid, mount, ipc, uts), a private read-only view of
the filesystem with a fresh writable tmpfs, and dropping to an unprivileged uid. The parent never
calls these on itself. See docs/sandbox.md for what is enforced where.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource

_libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 share the new-syscall numbers
_AT_FDCWD, _AT_RECURSIVE = -100, 0x8000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID = 0x1, 0x2


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def set_resource_limits(*, cpu_s: float, memory_bytes: int, file_size_bytes: int,
                        max_processes: int | None) -> None:
    """Soft CPU limit (SIGXCPU) then hard limit one second later (SIGKILL); address space, file
    size, process count (per real uid: only meaningful for a uid this sandbox owns alone), no
    core files."""
    cpu = max(1, int(cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    if max_processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))


def unshare(flags: int) -> None:
    """unshare(2) (os.unshare only exists from Python 3.12)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _map_self_to_root() -> None:
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def shared_view(*, root: bool, hidden: list[str], reachable: list[str]) -> list[str]:
    """Once, in the zygote, for everything it will fork: a new network namespace (no interface
    up, so no network at all) and a new mount namespace whose whole tree is read-only and nosuid,
    with each `hidden` directory covered by an empty tmpfs and each `reachable` one
    opened to every uid (make_reachable). Not root: first a user namespace mapping our uid to
    root inside. Returns notes on what the kernel refused (the rest still holds)."""
    notes: list[str] = []
    try:
        if not root:
            _map_self_to_root()
        unshare(CLONE_NEWNET | CLONE_NEWNS)
    except OSError as exc:
        return [f"namespaces refused ({exc.strerror}): no network or filesystem isolation"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in reachable:
        make_reachable(path)
    for path in hidden:
        if os.path.isdir(path):
            try:
                _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
            except OSError as exc:
                notes.append(f"could not hide {path} ({exc.strerror})")
    attr = _MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)  # /dev/null stays usable
    ret = _libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE,
                        ctypes.byref(attr), ctypes.sizeof(attr))
    if ret != 0:
        notes.append(f"read-only remount refused ({os.strerror(ctypes.get_errno())})")
    return notes


def enter_private_namespaces() -> None:
    """unshare() into new pid, mount, ipc and uts namespaces (pid applies to children: the
    caller forks next). Raises OSError when the kernel refuses."""
    unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def encoded(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    _check(_libc.mount(encoded(source), encoded(target), encoded(fstype), ctypes.c_ulong(flags),
                       encoded(data)), f"mount {target}")


def make_reachable(path: str) -> None:
    """Inside a new mount namespace: let every uid reach `path` (the interpreter's prefix, say
    /root/.pyenv/...) when an ancestor is closed to others (/root is 0700). The closed ancestor
    is covered by an empty tmpfs holding only the way down to `path`, bind-mounted back; the
    rest of that ancestor stays out of sight."""
    parts = path.strip("/").split("/")
    closed = None
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            closed = ancestor
            break
    if closed is None:
        return
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    try:
        _mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        os.makedirs(path, mode=0o755)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)


def private_proc_and_tmp(*, tmp_bytes: int, owner: tuple[int, int]) -> list[str]:
    """As pid 1 of a new pid namespace, in a new mount namespace: a fresh /proc showing only
    this namespace, and a fresh writable tmpfs of `tmp_bytes` on /tmp owned by `owner`."""
    notes: list[str] = []
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        notes.append(f"fresh /proc refused ({exc.strerror}): host /proc stays visible")
    uid, gid = owner
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={tmp_bytes},mode=700,uid={uid},gid={gid}")
    return notes


def lock_mounts() -> None:
    """Not root: enter a nested user namespace so the mounts above become locked (the candidate,
    uid 0 of the outer user namespace, could otherwise unmount a hiding tmpfs)."""
    _map_self_to_root()


def drop_privileges(uid: int, gid: int) -> None:
    """Become (uid, gid) with no supplementary groups; root can never be regained."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(errno.EPERM, "privilege drop did not take")


def no_new_privileges() -> None:
    """setuid binaries and file capabilities no longer raise privileges (PR_SET_NO_NEW_PRIVS)."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def die_with_parent(signal_number: int = 9) -> None:
    """Be sent `signal_number` when the parent dies (reset by credential changes: call after
    drop_privileges)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0), "prctl(PDEATHSIG)")


def adopt_orphans() -> None:
    """Become the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER) instead of the host's
    init, which may be slow to reap them: a zombie still counts against its uid's RLIMIT_NPROC."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")


def not_dumpable() -> None:
    """No ptrace attach, no /proc/<pid>/mem or fd access by same-uid processes."""
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")


def count_user_tasks(uid: int) -> int:
    """Threads+processes of `uid` now (RLIMIT_NPROC counts these per real uid)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count
