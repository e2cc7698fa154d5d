"""Sharded, resumable sampling (align.sample.sample_to_file): any number of shards merges to the
same file, a killed shard resumes at its first missing chunk, foreign chunks are refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from align.sample import Shard, chunk_path, chunks_dir, sample_to_file, sampling_complete
from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig, TeacherConfig
from megatron_rrtf.errors import ConfigError, DataError
from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records
from mrrtf.cli import main
from tests.rrtf_helpers import save_tiny_hf_model


def _problems_and_config(tmp_path, n=7):
    train, _ = generate_demo_problems(n, 0, seed=0)
    teacher = tmp_path / "teacher.jsonl"
    teacher.write_text("".join(json.dumps(r) + "\n" for r in teacher_records(train, 2)))
    cfg = RRTFConfig(student=SamplingConfig(samples=4, temperatures=[0.2, 1.0]),
                     teachers=[TeacherConfig(name="t", kind="jsonl", path=str(teacher),
                                             samples=1)])
    return [d.problem for d in train], cfg


def _fake_generate(fail_after: int | None = None):
    calls = []

    def generate(prompts, temperature, n, seed):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("simulated kill")
        calls.append(seed)
        return [[f"draw {seed} {len(p)} {i}" for i in range(n)] for p in prompts]
    return generate, calls


def test_one_shard_and_three_shards_merge_to_identical_candidates(tmp_path):
    problems, cfg = _problems_and_config(tmp_path)
    gen, _ = _fake_generate()
    one = tmp_path / "one.jsonl"
    assert sample_to_file(one, problems, cfg, gen, seed=3, chunk_size=2) == 7 * 5
    three = tmp_path / "three.jsonl"
    # shards finish in any order; only the last one to finish writes the merged file
    assert sample_to_file(three, problems, cfg, gen, seed=3, chunk_size=2,
                          shard=Shard(2, 3)) is None
    assert sample_to_file(three, problems, cfg, gen, seed=3, chunk_size=2,
                          shard=Shard(0, 3)) is None
    assert not three.exists() and not sampling_complete(three)
    assert sorted(p.name for p in chunks_dir(three).glob("chunk_*")) == [
        "chunk_000000.jsonl", "chunk_000002.jsonl", "chunk_000003.jsonl"]
    assert sample_to_file(three, problems, cfg, gen, seed=3, chunk_size=2,
                          shard=Shard(1, 3)) == 7 * 5
    assert three.read_bytes() == one.read_bytes() and sampling_complete(three)
    order = [p.id for p in problems]
    chunk_of = [order.index(json.loads(line)["problem_id"]) // 2
                for line in one.read_text().splitlines()]
    assert chunk_of == sorted(chunk_of)           # chunk order, whoever sampled which chunk


def test_killed_shard_resumes_at_its_first_missing_chunk(tmp_path):
    problems, cfg = _problems_and_config(tmp_path)
    whole = tmp_path / "whole.jsonl"
    sample_to_file(whole, problems, cfg, _fake_generate()[0], seed=3, chunk_size=2)
    part = tmp_path / "part.jsonl"
    # shard 0 of 2 owns chunks 0 and 2; killed in chunk 2 (2 temperatures per chunk)
    killed, _ = _fake_generate(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        sample_to_file(part, problems, cfg, killed, seed=3, chunk_size=2, shard=Shard(0, 2))
    assert chunk_path(part, 0).is_file() and not chunk_path(part, 2).exists()
    # what a kill during a write leaves behind: a partial temporary file, never a chunk
    (chunks_dir(part) / ".chunk_000002.jsonl.999.tmp").write_text('{"problem_id": "tr')
    resumed, calls = _fake_generate()
    assert sample_to_file(part, problems, cfg, resumed, seed=3, chunk_size=2,
                          shard=Shard(0, 2)) is None
    assert len(calls) == 2                        # chunk 2 only, two temperatures
    other, calls = _fake_generate()
    assert sample_to_file(part, problems, cfg, other, seed=3, chunk_size=2,
                          shard=Shard(1, 2)) == 7 * 5
    assert len(calls) == 4                        # chunks 1 and 3
    assert part.read_bytes() == whole.read_bytes()
    again, calls = _fake_generate()               # a finished file is not sampled again
    assert sample_to_file(part, problems, cfg, again, seed=3, chunk_size=2) == 7 * 5
    assert calls == []


def test_chunks_sampled_with_other_settings_are_refused(tmp_path):
    problems, cfg = _problems_and_config(tmp_path)
    out = tmp_path / "r.jsonl"
    sample_to_file(out, problems, cfg, _fake_generate()[0], seed=3, chunk_size=2,
                   shard=Shard(0, 2))
    with pytest.raises(DataError, match="different settings"):
        sample_to_file(out, problems, cfg, _fake_generate()[0], seed=4, chunk_size=2,
                       shard=Shard(1, 2))
    with pytest.raises(DataError, match="different settings"):
        sample_to_file(out, problems[:-1], cfg, _fake_generate()[0], seed=3, chunk_size=2)
    more = dataclasses.replace(cfg, student=SamplingConfig(samples=6, temperatures=[0.2, 1.0]))
    with pytest.raises(DataError, match="different settings"):
        sample_to_file(out, problems, more, _fake_generate()[0], seed=3, chunk_size=2)
    with pytest.raises(DataError, match="different settings"):
        sample_to_file(out, problems, cfg, _fake_generate()[0], seed=3, chunk_size=2,
                       shard=Shard(1, 2), student_model=tmp_path / "another_student")


def test_shard_from_flag_and_environment():
    assert Shard.parse("2/5") == Shard(2, 5)
    assert Shard.from_env({"RANK": "1", "WORLD_SIZE": "4"}) == Shard(1, 4)
    assert Shard.from_env({"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}) == Shard(3, 8)
    assert Shard.from_env({}) == Shard(0, 1)
    for bad in ("2", "a/b", "3/3", "-1/2"):
        with pytest.raises(ConfigError):
            Shard.parse(bad)


def test_cli_shards_of_a_tiny_hf_student_equal_one_process(tmp_path):
    save_tiny_hf_model(tmp_path / "student")
    train, _ = generate_demo_problems(3, 0, seed=0)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(d.to_json()) + "\n" for d in train))

    def sample(out, *shard):
        return main(["rrtf", "sample", "configs/rrtf/tiny_demo.yaml", "rrtf.teachers=[]",
                     "rrtf.student={samples: 2, temperatures: [0.8], max_new_tokens: 6}",
                     "rrtf.sample_chunk=1", "rrtf.sample.device=cpu",
                     "--problems", str(tmp_path / "p.jsonl"), "--student",
                     str(tmp_path / "student"), "--out", str(out), *shard])

    assert sample(tmp_path / "one.jsonl") == 0
    for i in (1, 0):
        assert sample(tmp_path / "two.jsonl", "--shard", f"{i}/2") == 0
    one = (tmp_path / "one.jsonl").read_text()
    assert (tmp_path / "two.jsonl").read_text() == one
    assert len(one.splitlines()) == 3 * 2 and len(set(one.splitlines())) > 1


@pytest.mark.slow
def test_three_concurrent_shard_processes_equal_one_process(tmp_path):
    """Three `mrrtf rrtf sample --shard i/3` processes at once (racing on settings.json and on
    the merge) write the file one process writes."""
    import os
    import subprocess
    import sys

    save_tiny_hf_model(tmp_path / "student")
    train, _ = generate_demo_problems(5, 0, seed=0)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(d.to_json()) + "\n" for d in train))

    def command(out, *shard):
        return [sys.executable, "-m", "mrrtf", "rrtf", "sample", "configs/rrtf/tiny_demo.yaml",
                "rrtf.teachers=[]", "rrtf.sample_chunk=1", "rrtf.sample.device=cpu",
                "rrtf.student={samples: 2, temperatures: [0.8], max_new_tokens: 6}",
                "--problems", str(tmp_path / "p.jsonl"), "--student", str(tmp_path / "student"),
                "--out", str(out), *shard]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert main(command(tmp_path / "one.jsonl")[3:]) == 0        # in this process
    procs = [subprocess.Popen(command(tmp_path / "three.jsonl", "--shard", f"{i}/3"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(3)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert sum("wrote 10 responses" in out for out in outputs) >= 1
    assert (tmp_path / "three.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
