"""rrtf.executor picks where verdicts run (sandbox.executors, align.rank.verdict_runner); a missing
Ray names its extra. Ray vs local verdicts on a real cluster: test_sandbox_ray.py."""

from __future__ import annotations

import sys

import pytest

from align.rank import verdict_runner
from megatron_rrtf.config.rrtf import RRTFConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.sandbox import Job
from megatron_rrtf.sandbox.executors import executor_run_many

pytestmark = pytest.mark.xdist_group("sandbox")

JOB = Job("def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3")


def test_executor_ray_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'megatron-rrtf\[ray\]'"):
        verdict_runner(RRTFConfig(executor="ray"))([JOB])


def test_unknown_executor_is_refused_and_local_decides_here():
    with pytest.raises(ConfigError, match="rrtf.executor='dask' is not one of local, ray"):
        executor_run_many("dask")
    [result] = verdict_runner(RRTFConfig(verdict_workers=1))([JOB])
    assert (result.outcome, result.tests_passed) == ("passed", 1)
