"""rrtf.executor=ray (sandbox.ray_executor): on a local Ray cluster, the verdicts of ordinary and
hostile programs are those of the local executor on the same jobs, in job order."""

from __future__ import annotations

import pytest

from megatron_rrtf.sandbox import Job, SandboxLimits
from megatron_rrtf.sandbox.executors import executor_run_many

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox")]

ray = pytest.importorskip("ray")

ADD = "def add(a, b):\n    return a + b\n"
LIMITS = SandboxLimits(timeout_s=10.0, cpu_s=2.0, memory_mb=256, max_processes=8)
"""A generous wall limit: under a loaded CI machine the memory bomb must reach its memory limit
(MemoryError) before the wall clock, on both executors, or the verdicts differ by timing alone."""
JOBS = [
    ("passes", Job(ADD, "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n")),
    ("partial", Job("def sq(x):\n    return x * x if x < 3 else 0\n",
                    "assert sq(1) == 1\nassert sq(2) == 4\nassert sq(3) == 9\n")),
    ("humaneval form", Job(ADD, "def check(candidate):\n    assert candidate(1, 2) == 3\n"
                                "    assert candidate(2, 2) == 5\n", "add")),
    ("syntax error", Job("def add(a, b)\n    return a + b\n", "assert add(1, 2) == 3")),
    ("load error", Job(ADD + "x = {}['missing']\n", "assert add(1, 2) == 3")),
    # a correct program that first SIGKILLs its parent: the kill reaches no process of ours
    # (on Ray: the worker), so the run reports and passes
    ("kill the parent", Job("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + ADD,
                            "assert add(1, 2) == 3")),
    # hostile: each would pass, or harm the host, under an in-process harness
    ("exit 0 before the tests", Job("import os\nos._exit(0)\n" + ADD, "assert add(1, 2) == 3")),
    ("forged report frames", Job(
        'import json, os, struct\nprint("passed")\n'
        'frame = json.dumps({"case": 0, "passed": True}).encode()\n'
        'for fd in range(1, 64):\n    try:\n'
        '        os.write(fd, struct.pack("!I", len(frame)) + frame)\n'
        '    except OSError:\n        pass\ndef add(a, b):\n    return 0\n',
        "assert add(1, 2) == 3")),
    ("equals everything", Job("class Anything:\n    def __eq__(self, other):\n        return True\n"
                              "def add(a, b):\n    return Anything()\n", "assert add(1, 2) == 3")),
    ("patched builtins", Job(
        "import builtins\nclass Harmless(BaseException):\n    pass\n"
        "builtins.AssertionError = Harmless\nbuiltins.len = lambda x: 0\n"
        "def add(a, b):\n    return 0\n", "assert add(1, 2) == 3\nassert len([1]) == 1\n")),
    ("StopIteration", Job("def double(x):\n    raise StopIteration\n",
                          "assert list(map(double, [1, 2])) == []")),
    ("fork bomb", Job("import os\nwhile True:\n    try:\n        os.fork()\n"
                      "    except OSError:\n        pass\n", "assert f() == 1")),
    ("sleeps forever", Job("import time\nwhile True:\n    time.sleep(0.01)\n", "assert f()")),
    ("memory bomb", Job("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n",
                        "assert blocks")),
]
HOSTILE = 6


def _verdicts(results):
    return [(r.outcome, r.tests_passed, r.tests_total, r.failed_test, r.error_type)
            for r in results]


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_verdicts_equal_local_verdicts_hostile_programs_included(ray_cluster):
    jobs = [job for _, job in JOBS]
    local = _verdicts(executor_run_many("local", workers=2, limits=LIMITS)(jobs))
    on_ray = _verdicts(executor_run_many("ray", workers=2, limits=LIMITS)(jobs))
    assert on_ray == local
    names = [name for name, _ in JOBS]
    assert [v[0] for v in local[:HOSTILE]] == ["passed", "failed", "failed", "syntax_error",
                                               "error", "passed"]
    for name, verdict in zip(names[HOSTILE:], local[HOSTILE:]):
        assert verdict[0] != "passed" and verdict[1] < verdict[2], (name, verdict)
    assert local[names.index("fork bomb")][0] == "timeout"
    assert local[names.index("memory bomb")][4] == "MemoryError"
