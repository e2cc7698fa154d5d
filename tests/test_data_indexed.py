"""Indexed datasets: corruption and truncation give DataError, an interrupted write never leaves
a loadable-but-wrong pair, reruns resume (skip sources already built), workers change nothing."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.data.indexed import AtomicIndexedWriter, open_indexed
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.errors import DataError


def write_pair(prefix, docs):
    writer = AtomicIndexedWriter(prefix, np.uint16)
    for doc in docs:
        writer.add(np.asarray(doc, dtype=np.uint16))
    return writer.commit()


def test_round_trip_and_manifest_expectations(tmp_path):
    info = write_pair(tmp_path / "a", [[1, 2, 3], [4], [5, 6]])
    assert info == {"docs": 3, "tokens": 6, "bin_bytes": 12, "idx_bytes": info["idx_bytes"]}
    ds = open_indexed(tmp_path / "a", info)
    assert [ds[i].tolist() for i in range(3)] == [[1, 2, 3], [4], [5, 6]]
    with pytest.raises(DataError, match="manifest.json says 2 / 6"):
        open_indexed(tmp_path / "a", {**info, "docs": 2})


def test_truncated_bin_is_a_clear_error(tmp_path):
    write_pair(tmp_path / "a", [[1, 2, 3], [4, 5]])
    with open(tmp_path / "a.bin", "r+b") as f:
        f.truncate(6)
    with pytest.raises(DataError, match=r"a.bin has 6 bytes but .*a.idx describes 10.*rerun"):
        open_indexed(tmp_path / "a")


@pytest.mark.parametrize("damage", ["header", "truncate", "pointers"])
def test_corrupt_idx_is_a_clear_error(tmp_path, damage):
    write_pair(tmp_path / "a", [[1, 2, 3], [4, 5], [6]])
    idx = tmp_path / "a.idx"
    raw = bytearray(idx.read_bytes())
    if damage == "header":
        raw[:4] = b"JUNK"
    elif damage == "truncate":
        raw = raw[:40]
    else:  # pointers follow the int32 lengths after the 34-byte header
        raw[34 + 12 + 8] ^= 0xFF
    idx.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"a.idx is corrupt.*rerun `mrrtf preprocess`"):
        open_indexed(tmp_path / "a")


def test_missing_file_is_a_clear_error(tmp_path):
    write_pair(tmp_path / "a", [[1]])
    os.remove(tmp_path / "a.idx")
    with pytest.raises(DataError, match="a.idx is missing"):
        open_indexed(tmp_path / "a")


def test_interrupted_commit_leaves_no_loadable_wrong_pair(tmp_path, monkeypatch):
    write_pair(tmp_path / "a", [[1, 2, 3]])
    real_replace = os.replace
    calls = []

    def crash_before_idx(src, dst):
        calls.append(str(dst))
        if str(dst).endswith(".idx"):
            raise KeyboardInterrupt("simulated crash between the .bin and .idx renames")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_before_idx)
    writer = AtomicIndexedWriter(tmp_path / "a", np.uint16)
    writer.add(np.array([7, 8, 9, 10, 11], dtype=np.uint16))
    with pytest.raises(KeyboardInterrupt):
        writer.commit()
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls[0].endswith("a.bin")
    # the new .bin is in place, the old .idx is gone: nothing describes the wrong data
    with pytest.raises(DataError, match="a.idx is missing"):
        open_indexed(tmp_path / "a")


def test_abort_removes_temporaries(tmp_path):
    writer = AtomicIndexedWriter(tmp_path / "a", np.uint16)
    writer.add(np.array([1, 2], dtype=np.uint16))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def _config(root, tokenizer_path, code_dir, *extra):
    return load_config([], [
        f"data.tokenizer={tokenizer_path}", f"data.output_dir={root / 'out'}", "data.workers=1",
        f"data.sources=[{{name: a, domain: code, dir: '{code_dir}', glob: '*.py'}},"
        f" {{name: b, domain: code, dir: '{code_dir}', glob: 'b*.py'}}]", *extra])


def test_rerun_keeps_current_outputs_and_rebuilds_damaged_or_changed_ones(tmp_path, tiny_tokenizer_path, caplog):
    code = tmp_path / "code"
    code.mkdir()
    for i in range(6):
        (code / f"a{i}.py").write_text(f"a{i} = {i}\n")
        (code / f"b{i}.py").write_text(f"b{i} = {i} * 2\n")
    config = _config(tmp_path, tiny_tokenizer_path, code)
    caplog.set_level("INFO")
    first = preprocess(config, progress=False)
    assert "source b: no training documents left" in caplog.text
    # source b's files are all duplicates of source a's files: dedup across sources
    assert first["sources"]["b"]["skipped"]["duplicate"] == 6
    mtime = (tmp_path / "out" / "a.train.bin").stat().st_mtime_ns
    caplog.clear()
    second = preprocess(config, progress=False)
    assert (tmp_path / "out" / "a.train.bin").stat().st_mtime_ns == mtime
    assert "manifest.json is up to date" in caplog.text
    assert second["sources"]["b"] == first["sources"]["b"]
    # a damaged output is rebuilt, not trusted
    with open(tmp_path / "out" / "a.train.bin", "ab") as f:
        f.write(b"\0\0")
    caplog.clear()
    third = preprocess(config, progress=False)
    assert "up to date" not in caplog.text
    assert third["sources"]["a"]["tokens"] == first["sources"]["a"]["tokens"]
    # changing ingest rules changes every fingerprint
    changed = preprocess(_config(tmp_path, tiny_tokenizer_path, code,
                                 "data.ingest.dedup=false"), progress=False)
    assert changed["sources"]["b"]["docs_written"] == 6


def test_two_workers_write_the_same_bytes_as_one(tmp_path, tiny_tokenizer_path):
    stdlib_code = tmp_path / "code"
    stdlib_code.mkdir()
    import sysconfig
    from pathlib import Path

    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:30]:
        shutil.copy(path, stdlib_code / path.name)
    one = _config(tmp_path / "one", tiny_tokenizer_path, stdlib_code, "data.chunk_docs=4")
    two = _config(tmp_path / "two", tiny_tokenizer_path, stdlib_code, "data.chunk_docs=4",
                  "data.workers=2")
    preprocess(one, progress=False)
    preprocess(two, progress=False)
    for name in ("a.train.bin", "a.train.idx", "a.heldout.bin", "a.heldout.idx"):
        assert (tmp_path / "one" / "out" / name).read_bytes() == \
            (tmp_path / "two" / "out" / name).read_bytes(), name
    m1 = json.loads((tmp_path / "one" / "out" / "manifest.json").read_text())
    assert m1["sources"]["a"]["docs_written"] > 0


def test_crash_mid_task_keeps_finished_tasks_and_leaves_no_partial_files(
        tmp_path, tiny_tokenizer_path, monkeypatch):
    import megatron_rrtf.data.stages.read as read_module

    code = tmp_path / "code"
    code.mkdir()
    for i in range(8):
        (code / f"a{i}.py").write_text(f"a{i} = {i}\n")
        (code / f"b{i}.py").write_text(f"b{i} = '{i}' * 3\n")
    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        "data.workers=1", "data.tasks=2", "data.chunk_docs=2", "data.heldout_fraction=0.0",
        f"data.sources=[{{name: a, domain: code, dir: '{code}', glob: 'a*.py'}},"
        f" {{name: b, domain: code, dir: '{code}', glob: 'b*.py'}}]"])
    real = read_module.iter_unit
    calls = {"b": 0}

    def crashing(source, unit):
        if source.name == "b":
            calls["b"] += 1
            if calls["b"] == 13:  # the write stage, its task 1 part-way through source b
                raise KeyboardInterrupt("simulated kill")
        yield from real(source, unit)

    monkeypatch.setattr(read_module, "iter_unit", crashing)
    with pytest.raises(KeyboardInterrupt):
        preprocess(config, progress=False)
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("a.", "b."))) == []
    (work,) = (out / ".pipeline").iterdir()
    assert not [p for p in work.rglob("*") if ".tmp" in p.name]
    finished = {p: p.stat().st_mtime_ns for p in work.rglob("completions/*")}
    assert work / "logs" / "write" / "completions" / "00000" in finished
    monkeypatch.setattr(read_module, "iter_unit", real)
    manifest = preprocess(config, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert manifest["sources"]["a"]["docs_written"] == manifest["sources"]["b"]["docs_written"] == 8
