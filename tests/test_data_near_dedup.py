"""Near-dedup: code-aware shingles as BigCode split them; planted near-duplicates (across
sources) removed with one copy kept, distinct files kept."""

from __future__ import annotations

import json

import numpy as np

from megatron_rrtf.config import load_config
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.data.stages.near_dedup import code_shingles, code_tokens


def test_code_tokens_split_on_non_alphanumerics_and_keep_case():
    assert code_tokens("def f(x_1):\n    return X_1+2  # é") == [
        "def", "f", "x_1", "return", "X_1", "2"]
    assert code_shingles("a.b(c, d)", 2) == {"a b", "b c", "c d"}
    assert code_shingles("one two", 5) == set()


def program(rng: np.random.Generator, lines: int = 60) -> list[str]:
    names = [f"v{k}" for k in rng.integers(0, 10**6, size=lines * 3)]
    return [f"{a} = {b} + {c} * {i}\n" for i, (a, b, c) in
            enumerate(zip(names[0::3], names[1::3], names[2::3]))]


def jaccard(a: str, b: str) -> float:
    x, y = code_shingles(a, 5), code_shingles(b, 5)
    return len(x & y) / len(x | y)


def test_planted_near_duplicates_removed_and_distinct_files_kept(tmp_path, tiny_tokenizer_path):
    rng = np.random.default_rng(0)
    code = tmp_path / "code"
    code.mkdir()
    originals = [program(rng) for _ in range(6)]
    for i, lines in enumerate(originals):
        (code / f"orig{i}.py").write_text("".join(lines))
    # near copies: one line of 60 rewritten (Jaccard ~0.9), in this source and in the other one
    near = []
    for i in (1, 4):
        lines = list(originals[i])
        lines[30] = "changed = 1\n"
        near.append("".join(lines))
        assert jaccard(near[-1], "".join(originals[i])) > 0.8
    (code / "zz_copy1.py").write_text(near[0])
    notes = tmp_path / "notes.jsonl"
    rows = [{"text": near[1]}] + [{"text": "".join(program(rng))} for _ in range(3)]
    notes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # a file sharing half its lines with another is not a near duplicate (Jaccard ~0.33)
    half = "".join(originals[2][:30] + program(rng, 30))
    assert jaccard(half, "".join(originals[2])) < 0.4
    (code / "zz_half.py").write_text(half)

    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        "data.workers=1", "data.tasks=2", "data.heldout_fraction=0.0",
        "data.near_dedup.enabled=true",
        f"data.sources=[{{name: py, domain: code, dir: '{code}', glob: '*.py'}}, "
        f"{{name: notes, domain: nl, files: ['{notes}']}}]"])
    manifest = preprocess(config, progress=False)
    py, nt = manifest["sources"]["py"], manifest["sources"]["notes"]
    removed = py["skipped"]["near_duplicate"] + nt["skipped"]["near_duplicate"]
    assert removed == 2  # one per planted pair
    assert py["docs_written"] + nt["docs_written"] == 6 + 1 + 4 + 1 - 2
    assert py["docs_written"] >= 6  # the half-shared file and all distinct originals stay
