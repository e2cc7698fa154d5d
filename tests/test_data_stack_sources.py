"""Stack-style shards (parquet and jsonl with content, language, licences, path, size) read
from disk with BigCode's filters: language, licence list, size, line-length rules,
alphanumeric fraction; each filtered record counted under its reason."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.data.indexed import open_indexed
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.errors import DataError

GOOD = "def keep_{i}(x):\n    return x + {i}\n"


def records() -> list[dict]:
    """(what the filters must do with each) as Stack v1 lays a record out."""
    rows = [
        # kept: python, permissive licence (one of several listed)
        (GOOD.format(i=0), "Python", ["MIT"]),
        (GOOD.format(i=1), "python", ["GPL-3.0", "Apache-2.0"]),
        (GOOD.format(i=2), "Python", ["mit"]),
        # language
        ("fn main() { println!(\"hi\"); }\n", "Rust", ["MIT"]),
        # licence
        (GOOD.format(i=3), "Python", ["GPL-3.0"]),
        (GOOD.format(i=4), "Python", []),
        # too large (size column)
        (GOOD.format(i=5) * 200, "Python", ["MIT"]),
        # a line longer than 1000
        ("x = '" + "a" * 1200 + "'\n", "Python", ["MIT"]),
        # mean line length > 100 (every line 150 characters)
        (("y = " + "b" * 146 + "\n") * 5, "Python", ["MIT"]),
        # alphanumeric fraction < 0.25
        ("#" * 60 + "\nz = 1\n" + "-" * 60 + "\n", "Python", ["MIT"]),
    ]
    return [{"content": text, "lang": lang, "max_stars_repo_licenses": lic,
             "max_stars_repo_path": f"repo/file{i}.py", "size": len(text.encode())}
            for i, (text, lang, lic) in enumerate(rows)]


FILTERS = ("{language_field: lang, languages: [python], license_field: max_stars_repo_licenses, "
           "licenses: [mit, apache-2.0], size_field: size, "
           "max_size: 2000, max_line_length: 1000, max_mean_line_length: 100, "
           "min_alphanumeric_fraction: 0.25}")


def test_stack_shards_filtered_by_language_licence_size_and_lines(tmp_path, tiny_tokenizer,
                                                                  tiny_tokenizer_path):
    rows = records()
    pq.write_table(pa.Table.from_pylist(rows[:5]), tmp_path / "shard-0.parquet")
    (tmp_path / "shard-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[5:]))
    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        "data.workers=1", "data.tasks=2", "data.heldout_fraction=0.0",
        f"data.sources=[{{name: stack_py, domain: code, language: python, field: content, "
        f"files: ['{tmp_path / 'shard-0.parquet'}', '{tmp_path / 'shard-1.jsonl'}'], "
        f"filters: {FILTERS}}}]"])
    entry = preprocess(config, progress=False)["sources"]["stack_py"]
    assert {k: v for k, v in entry["skipped"].items() if v} == {
        "language": 1, "license": 2, "too_large": 1, "long_line": 1, "mean_line_length": 1,
        "alphanumeric_fraction": 1}
    assert entry["docs_in"] == 10 and entry["docs_written"] == 3
    dataset = open_indexed(tmp_path / "out" / "stack_py.train", entry["splits"]["train"])
    texts = [tiny_tokenizer.decode(dataset[i][:-1].tolist()) for i in range(len(dataset))]
    assert texts == [GOOD.format(i=i) for i in range(3)]


def test_missing_stack_column_names_the_filter_key(tmp_path, tiny_tokenizer_path):
    pq.write_table(pa.Table.from_pylist([{"content": "x = 1\n"}]), tmp_path / "s.parquet")
    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        f"data.sources=[{{name: s, domain: code, field: content, "
        f"files: ['{tmp_path / 's.parquet'}'], filters: {{language_field: lang, "
        "languages: [python]}}]"])
    with pytest.raises(DataError, match="filters.language_field='lang' is not a column"):
        preprocess(config, progress=False)
