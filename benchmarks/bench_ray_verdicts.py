"""Claim: rrtf.executor=ray decides the same verdicts as the local executor at a throughput that
scales with the cluster's CPUs; on one machine with 2 workers each, how much the Ray round trip
costs. Both executors judge the same jobs (HumanEval's 164 canonical solutions, all passing, plus
a wrong-answer copy of each: 328 programs) with 2 workers in the same run, rounds alternating
local / ray after one warm-up round each (Ray starts its workers and each worker its fork server
then). Verdicts are compared every round.

    python benchmarks/bench_ray_verdicts.py [--rounds 3] [--workers 2]

Prints per-round programs/s of both, then `ours` (ray) vs `baseline` (local): medians over rounds
and the min-max spread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report  # noqa: E402

from megatron_rrtf.eval.humaneval import load_problems, make_job  # noqa: E402
from megatron_rrtf.sandbox.executors import executor_run_many  # noqa: E402


def jobs() -> list:
    problems = load_problems().values()
    right = [make_job(p, p["canonical_solution"]) for p in problems]
    wrong = [make_job(p, "    return None\n") for p in problems]
    return right + wrong


def timed(run, batch) -> tuple[float, list]:
    t0 = time.perf_counter()
    results = run(batch)
    return len(batch) / (time.perf_counter() - t0), results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    batch = jobs()
    local = executor_run_many("local", workers=args.workers)
    on_ray = executor_run_many("ray", workers=args.workers)
    verdict = [(r.outcome, r.tests_passed, r.tests_total) for r in local(batch)]  # warm-up
    on_ray(batch)
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(args.rounds):
        for name, run in (("local", local), ("ray", on_ray)):
            rate, results = timed(run, batch)
            same = [(x.outcome, x.tests_passed, x.tests_total) for x in results] == verdict
            rates[name].append(rate)
            print(f"round {r + 1} {name}: {rate:.1f} programs/s ({len(batch)} programs, "
                  f"verdicts {'identical' if same else 'DIFFER'})", flush=True)
            if not same:
                return 1
    ray.shutdown()
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):.1f} programs/s, spread "
              f"{min(values):.1f}-{max(values):.1f} over {args.rounds} rounds")
    report(f"verdict throughput at {args.workers} workers (ray vs local)",
           statistics.median(rates["ray"]), statistics.median(rates["local"]), "programs/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
