"""The datatrove preprocessing pipeline: same output as the single-process pipeline it replaced
when the new stages are off, manifest counts that add up across tasks, resume after a killed
task without redoing finished ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.data.indexed import open_indexed, token_dtype
from megatron_rrtf.data.ingest import SPLITS, IngestCounts, clean_documents
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.data.sources import iter_documents

REPO = Path(__file__).resolve().parents[1]


def reference_output(data, tokenizer) -> dict:
    """What the pipeline before datatrove wrote (its code path, kept in ingest.clean_documents):
    sources in order, one dedup set across them, per split the documents' tokens + EOD."""
    seen: set[bytes] = set()
    out = {}
    for source in data.sources:
        counts = IngestCounts()
        docs = {split: [] for split in SPLITS}
        for doc in clean_documents(iter_documents(source), data.ingest, data.heldout_fraction,
                                   seen, counts):
            docs[doc.split].append(tokenizer.encode(doc.text) + [tokenizer.eod])
        out[source.name] = (counts, docs)
    return out


def split_bytes(docs: list[list[int]], dtype) -> bytes:
    return b"".join(np.asarray(d, dtype=dtype).tobytes() for d in docs)


@pytest.mark.slow
def test_builtin_corpus_output_equals_previous_pipeline_when_new_stages_off(
        tmp_path, tiny_tokenizer, tiny_tokenizer_path):
    config = load_config([REPO / "configs" / "data" / "builtin.yaml"], [
        f"data.builtin_corpus={tmp_path / 'corpus'}", f"data.tokenizer={tiny_tokenizer_path}",
        f"data.output_dir={tmp_path / 'out'}", "data.workers=2", "data.tasks=3",
        f"data.sources=[{{name: stdlib_python, domain: code, language: python, "
        f"dir: '{tmp_path / 'corpus' / 'code' / 'python'}', glob: '**/*.py'}}, "
        f"{{name: english_prose, domain: nl, dir: '{tmp_path / 'corpus' / 'nl'}'}}]",
        "data.near_dedup.enabled=false", "data.decontaminate.enabled=false"])
    manifest = preprocess(config, progress=False)
    expected = reference_output(config.data, tiny_tokenizer)
    dtype = token_dtype(tiny_tokenizer.vocab_size)
    for source in config.data.sources:
        counts, docs = expected[source.name]
        entry = manifest["sources"][source.name]
        assert entry["docs_in"] == counts.docs_in
        assert entry["docs_written"] == counts.docs_written
        assert {k: v for k, v in entry["skipped"].items() if v} == \
            {k: v for k, v in counts.skipped.items() if v}
        for split in SPLITS:
            prefix = tmp_path / "out" / f"{source.name}.{split}"
            assert Path(f"{prefix}.bin").read_bytes() == split_bytes(docs[split], dtype)
            dataset = open_indexed(prefix, entry["splits"][split])
            assert dataset.index.sequence_lengths.tolist() == [len(d) for d in docs[split]]
    assert sum(manifest["sources"]["stdlib_python"]["skipped"].values()) > 0  # rules exercised


def write_sources(root: Path) -> tuple[Path, Path]:
    """Two sources whose documents repeat across files, shards and sources."""
    code = root / "code"
    code.mkdir(parents=True)
    for i in range(12):
        body = "".join(f"    total_{i}_{j} = value_{j} * {i + j}\n" for j in range(40))
        (code / f"m{i:02d}.py").write_text(f"def unit_{i}(value):\n{body}    return value\n")
    (code / "m12.py").write_text((code / "m03.py").read_text())  # exact copy, later task
    (code / "m13.py").write_text("")  # empty
    notes = root / "notes.jsonl"
    rows = [{"text": f"Note number {i} about parsing and tokens. " * 20} for i in range(6)]
    rows.append({"text": (code / "m07.py").read_text()})  # copy of a file of the other source
    rows.append({"title": "no text"})
    notes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return code, notes


def pipeline_config(tmp_path, tokenizer_path, code, notes, *extra: str):
    return load_config([], [
        f"data.tokenizer={tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        "data.workers=1", "data.tasks=4", "data.heldout_fraction=0.2",
        f"data.sources=[{{name: py, domain: code, language: python, dir: '{code}', "
        f"glob: '*.py'}}, {{name: notes, domain: nl, files: ['{notes}']}}]", *extra])


def test_manifest_adds_up_across_tasks(tmp_path, tiny_tokenizer_path):
    code, notes = write_sources(tmp_path)
    config = pipeline_config(tmp_path, tiny_tokenizer_path, code, notes)
    manifest = preprocess(config, progress=False)
    py, nt = manifest["sources"]["py"], manifest["sources"]["notes"]
    assert (py["docs_in"], nt["docs_in"]) == (14, 8)
    assert {k: v for k, v in py["skipped"].items() if v} == {"duplicate": 1, "empty": 1}
    assert {k: v for k, v in nt["skipped"].items() if v} == {"duplicate": 1, "missing_field": 1}
    for entry in (py, nt):
        assert entry["docs_in"] == entry["docs_written"] + sum(entry["skipped"].values())
        assert sum(entry["splits"][s]["docs"] for s in SPLITS) == entry["docs_written"]
        assert sum(entry["splits"][s]["tokens"] for s in SPLITS) == entry["tokens"]
    # the four tasks' parts were merged and removed
    assert not list((tmp_path / "out").rglob("*.00000.bin"))


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    from megatron_rrtf.config import load_config
    from megatron_rrtf.data.preprocess import preprocess
    from megatron_rrtf.data.stages.write import TokenizeAndWrite

    original = TokenizeAndWrite.run

    def run(self, data, rank=0, world_size=1):
        if rank == int(os.environ.get("KILL_RANK", "-1")):
            for _ in data:  # part-way through its documents
                os._exit(9)  # like kill -9: no cleanup, no completion marker
        return original(self, data, rank, world_size)

    TokenizeAndWrite.run = run
    preprocess(load_config([], sys.argv[1:]), progress=False)
""")


@pytest.mark.slow
def test_killed_task_resumes_without_redoing_finished_tasks(tmp_path, tiny_tokenizer_path):
    code, notes = write_sources(tmp_path)
    overrides = [f"data.tokenizer={tiny_tokenizer_path}", "data.workers=1", "data.tasks=3",
                 "data.heldout_fraction=0.2", "data.near_dedup.enabled=true",
                 "data.near_dedup.bands=4", "data.near_dedup.rows=4",
                 f"data.sources=[{{name: py, domain: code, language: python, dir: '{code}', "
                 f"glob: '*.py'}}, {{name: notes, domain: nl, files: ['{notes}']}}]"]
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "KILL_RANK": "1"}


    def run(out: Path, kill: bool = True) -> subprocess.CompletedProcess:
        # output to a file, not a pipe: the killed run's orphaned helper (datatrove's
        # multiprocess Manager) would hold a pipe open; its process group is ended after
        log = tmp_path / f"{out.name}.{int(kill)}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, str(script), f"data.output_dir={out}",
                                     *overrides], env=env,
                                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = proc.wait(timeout=300)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return subprocess.CompletedProcess(proc.args, returncode, log.read_text(), "")

    killed = run(tmp_path / "out", kill=True)
    assert killed.returncode == 9, killed.stdout[-2000:]
    assert not (tmp_path / "out" / "manifest.json").exists()
    (work,) = (tmp_path / "out" / ".pipeline").iterdir()
    done = sorted(p.name for p in (work / "logs" / "write" / "completions").iterdir())
    assert done == ["00000"]
    markers = {p: p.stat().st_mtime_ns for p in (work / "logs").rglob("completions/*")}
    task0_log = work / "logs" / "write" / "logs" / "task_00000.log"
    before = (task0_log.stat().st_mtime_ns,)

    config = load_config([], [f"data.output_dir={tmp_path / 'out'}", *overrides])
    resumed = preprocess(config, progress=False)
    assert task0_log.stat().st_mtime_ns == before[0]  # task 0 of the write stage not rerun
    for marker, mtime in markers.items():  # nor any task that had finished in any stage
        assert marker.stat().st_mtime_ns == mtime
    fresh = preprocess(load_config([], [f"data.output_dir={tmp_path / 'fresh'}", *overrides]),
                       progress=False)
    assert resumed["sources"].keys() == fresh["sources"].keys()
    for name, entry in fresh["sources"].items():
        assert resumed["sources"][name]["skipped"] == entry["skipped"]
        for split in SPLITS:
            for suffix in (".bin", ".idx"):
                assert (tmp_path / "out" / f"{name}.{split}{suffix}").read_bytes() == \
                    (tmp_path / "fresh" / f"{name}.{split}{suffix}").read_bytes()


def test_slurm_executor_chains_one_job_per_stage_and_needs_partition(tmp_path,
                                                                    tiny_tokenizer_path):
    """The Slurm path builds datatrove's SlurmPipelineExecutor per stage, chained by depends
    (nothing is submitted: no cluster here); a missing partition/time is refused first."""
    from megatron_rrtf.data.pipeline import build_pipeline
    from megatron_rrtf.data.task_plan import plan_tasks
    from megatron_rrtf.errors import ConfigError

    code, notes = write_sources(tmp_path)
    config = pipeline_config(tmp_path, tiny_tokenizer_path, code, notes, "data.executor=slurm",
                             "data.near_dedup.enabled=true", "data.near_dedup.bands=4",
                             "data.executor_options={partition: cpu, time: '01:00:00'}")
    plan = plan_tasks(config.data, 4)
    executor = build_pipeline(config.data, plan, tmp_path / "work", str(tiny_tokenizer_path),
                              {}, [], "uint16", [])
    chain = []
    while executor is not None:
        chain.append((type(executor).__name__, executor.job_name, executor.tasks))
        executor = executor.depends
    assert chain[::-1] == [("SlurmPipelineExecutor", f"mrrtf-{stage}", tasks) for stage, tasks in
                           (("exact_signatures", 4), ("exact_find", 8), ("near_signatures", 4),
                            ("near_buckets", 4), ("near_shingles", 4), ("near_verify", 4),
                            ("near_cluster", 1), ("write", 4), ("merge", 1))]
    config.data.executor_options = {"time": "01:00:00"}
    with pytest.raises(ConfigError, match="executor_options.partition"):
        build_pipeline(config.data, plan, tmp_path / "work", str(tiny_tokenizer_path), {}, [],
                       "uint16", [])
