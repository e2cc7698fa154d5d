"""Ingest: every skip reason counted, dedup across sources, manifest counts add up, bad
configuration refused before any work, every origin kind read."""

from __future__ import annotations

import json

import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.data.indexed import open_indexed
from megatron_rrtf.data.ingest import SKIP_REASONS
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.errors import ConfigError, DataError

GOOD = "def good_{i}(x):\n    return x + {i}\n"


def make_config(tmp_path, tokenizer_path, sources: str, *extra: str):
    return load_config([], [f"data.tokenizer={tokenizer_path}",
                            f"data.output_dir={tmp_path / 'out'}", "data.workers=1",
                            "data.heldout_fraction=0.0", f"data.sources={sources}", *extra])


@pytest.fixture
def messy_dir(tmp_path):
    d = tmp_path / "code"
    d.mkdir()
    for i in range(5):
        (d / f"good{i}.py").write_text(GOOD.format(i=i))
    (d / "dup.py").write_text(GOOD.format(i=0))
    (d / "binary.py").write_bytes(b"x = 1\n\x00\x01\x02")
    (d / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (d / "blank.py").write_text("  \n\t\n")
    (d / "huge.py").write_text("# big\n" * 400)
    (d / "minified.py").write_text("x=1;" * 400 + "\n")
    (d / "notes.txt").write_text("not matched by the glob")
    return d


def test_each_skip_reason_is_counted(tmp_path, tiny_tokenizer_path, messy_dir):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"text": "A fine sentence about code."}),
        "{not json",
        json.dumps({"title": "no text field here"}),
        json.dumps({"text": GOOD.format(i=1)}),  # duplicate of a file in the first source
        json.dumps({"text": ""}),
        json.dumps({"text": "tok.decode(ids) + '<|endoftext|>'"}),
        json.dumps({"text": "nul \u0000 inside"}),
        json.dumps({"text": "é" * 1500}),  # 3000 bytes in UTF-8 > max_doc_bytes
        json.dumps({"text": "a line " + "x" * 300}),
        json.dumps({"text": 42}),
    ]) + "\n")
    config = make_config(
        tmp_path, tiny_tokenizer_path,
        f"[{{name: py, domain: code, language: python, dir: '{messy_dir}', glob: '*.py'}},"
        f" {{name: notes, domain: nl, files: ['{jsonl}']}}]",
        "data.ingest.max_doc_bytes=2000", "data.ingest.max_line_length=200")
    manifest = preprocess(config, progress=False)
    py, notes = manifest["sources"]["py"], manifest["sources"]["notes"]
    assert py["skipped"] == {**dict.fromkeys(SKIP_REASONS, 0), "duplicate": 1, "binary": 1,
                             "invalid_utf8": 1, "empty": 1, "too_large": 1, "long_line": 1}
    assert notes["skipped"] == {**dict.fromkeys(SKIP_REASONS, 0), "malformed_json": 1,
                                "missing_field": 2, "duplicate": 1, "empty": 1,
                                "special_token": 1, "binary": 1, "too_large": 1,
                                "long_line": 1}
    for entry, docs_in, written in ((py, 11, 5), (notes, 10, 1)):
        assert entry["docs_in"] == docs_in
        assert entry["docs_written"] == written
        assert entry["docs_in"] == entry["docs_written"] + sum(entry["skipped"].values())
        assert entry["splits"]["train"]["docs"] + entry["splits"]["heldout"]["docs"] == written
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["sources"]["py"]["skipped"] == py["skipped"]
    assert on_disk["tokenizer"]["fingerprint"]
    assert on_disk["config"]["ingest"]["max_line_length"] == 200


def test_written_documents_decode_back_with_eod(tmp_path, tiny_tokenizer, tiny_tokenizer_path):
    d = tmp_path / "c"
    d.mkdir()
    texts = [GOOD.format(i=i) + "# é€😀\r\n\tend\n" for i in range(3)]
    for i, t in enumerate(texts):
        (d / f"{i}.py").write_text(t, newline="")
    config = make_config(tmp_path, tiny_tokenizer_path,
                         f"[{{name: c, domain: code, dir: '{d}', glob: '*.py'}}]")
    preprocess(config, progress=False)
    ds = open_indexed(tmp_path / "out" / "c.train")
    assert len(ds) == 3
    for i, text in enumerate(texts):
        tokens = ds[i].tolist()
        assert tokens[-1] == tiny_tokenizer.eod and tiny_tokenizer.eod not in tokens[:-1]
        assert tiny_tokenizer.decode(tokens[:-1]) == text


@pytest.mark.parametrize("sources, message", [
    ("[{name: a, domain: code, dir: '{tmp}/nowhere'}]", "does not exist"),
    ("[{name: a, domain: code, dir: '{tmp}', glob: '*.rs'}]", "matches no file"),
    ("[{name: a, domain: nl, files: ['{tmp}/missing.jsonl']}]", "missing.jsonl does not exist"),
    ("[{name: a, domain: nl, files: ['{tmp}/d.jsonl'], field: content}]", "field='content'"),
    ("[{name: a, domain: nl, files: ['{tmp}/d.csv']}]", "unknown suffix"),
    ("[{name: a, domain: nl, hf_disk: '{tmp}/nope'}]", "does not exist"),
])
def test_bad_source_fails_before_any_work(tmp_path, tiny_tokenizer_path, sources, message):
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    (tmp_path / "d.csv").write_text("text\nhello\n")
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.py").write_text("x = 1\n")
    config = make_config(
        tmp_path, tiny_tokenizer_path,
        f"[{{name: ok, domain: code, dir: '{good}'}}, " + sources.replace("{tmp}", str(tmp_path))[1:])
    with pytest.raises(DataError, match=message):
        preprocess(config, progress=False)
    assert not (tmp_path / "out").exists()  # nothing was written: the first source was not built


def test_bad_source_config_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data.sources\[0\] \(a\) needs exactly one of"):
        load_config([], ["data.sources=[{name: a, domain: nl}]"])
    with pytest.raises(ConfigError, match="is used twice"):
        load_config([], ["data.sources=[{name: a, domain: nl, dir: x}, {name: a, domain: nl, dir: y}]"])
    with pytest.raises(ConfigError, match="domain='text' is not one of"):
        load_config([], ["data.sources=[{name: a, domain: text, dir: x}]"])


def test_parquet_and_saved_dataset_sources(tmp_path, tiny_tokenizer_path):
    import datasets

    rows = {"content": [f"print({i})\n" for i in range(20)], "n": list(range(20))}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "p.parquet"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"content": [f"x = {i}\n" for i in range(15)]})}).save_to_disk(str(tmp_path / "saved"))
    config = make_config(
        tmp_path, tiny_tokenizer_path,
        f"[{{name: pq, domain: code, files: ['{tmp_path}/p.parquet'], field: content}},"
        f" {{name: hf, domain: code, hf_disk: '{tmp_path}/saved', field: content}}]")
    manifest = preprocess(config, progress=False)
    assert manifest["sources"]["pq"]["docs_written"] == 20
    assert manifest["sources"]["hf"]["docs_written"] == 15


def test_heldout_split_is_deterministic_by_content(tmp_path, tiny_tokenizer_path):
    d = tmp_path / "c"
    d.mkdir()
    for i in range(200):
        (d / f"{i:03}.py").write_text(GOOD.format(i=i))
    config = make_config(tmp_path, tiny_tokenizer_path,
                         f"[{{name: c, domain: code, dir: '{d}', glob: '*.py'}}]",
                         "data.heldout_fraction=0.25")
    first = preprocess(config, progress=False)["sources"]["c"]["splits"]
    assert 25 <= first["heldout"]["docs"] <= 75
    # the same documents under other names, in another order: same split sizes
    for path in d.iterdir():
        path.rename(d / f"z{path.name}")
    config2 = make_config(tmp_path / "again", tiny_tokenizer_path,
                          f"[{{name: c, domain: code, dir: '{d}', glob: '*.py'}}]",
                          "data.heldout_fraction=0.25")
    (tmp_path / "again").mkdir()
    second = preprocess(config2, progress=False)["sources"]["c"]["splits"]
    assert second["heldout"]["docs"] == first["heldout"]["docs"]
    assert second["heldout"]["tokens"] == first["heldout"]["tokens"]
