"""Near-dedup: code-aware shingles as BigCode split them; planted near-duplicates (across
sources) removed with one copy kept, distinct files kept."""

from __future__ import annotations

import json

import numpy as np

from megatron_rrtf.config import load_config
from megatron_rrtf.data.preprocess import preprocess
from megatron_rrtf.data.stages.near_dedup import (
    code_shingles,
    code_tokens,
    exact_jaccard,
    shingle_hashes,
)


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


def edited_pair(rng: np.random.Generator, tokens: int, edits: int) -> tuple[str, str]:
    """A random program of `tokens` distinct tokens and a copy with `edits` tokens replaced,
    at least 5 apart and away from the ends, so each edit changes exactly 5 of the 5-shingles:
    Jaccard (S - 5e) / (S + 5e) with S = tokens - 4 shingles."""
    words = [f"t{k}" for k in rng.choice(10**8, size=tokens, replace=False)]
    copy = list(words)
    for k, pos in enumerate(range(6, tokens - 6, (tokens - 12) // edits)[:edits]):
        copy[pos] = f"edit{k}"

    def text(toks: list[str]) -> str:
        return "\n".join(" ".join(toks[i:i + 8]) for i in range(0, len(toks), 8)) + "\n"

    return text(words), text(copy)


def test_pairs_just_above_threshold_removed_just_below_kept(tmp_path, tiny_tokenizer_path):
    """Decisions follow the exact shingle Jaccard at 0.7: a pair at 0.72 loses one copy, a pair
    at 0.68 keeps both (a signature estimate, +-0.03 at 252 hashes, cannot tell these apart
    reliably)."""
    rng = np.random.default_rng(7)
    above = edited_pair(rng, 311, 10)  # (307 - 50) / (307 + 50) = 0.720
    below = edited_pair(rng, 319, 12)  # (315 - 60) / (315 + 60) = 0.680
    assert 0.715 < jaccard(*above) < 0.725
    assert 0.675 < jaccard(*below) < 0.685
    others = ["".join(program(rng)) for _ in range(4)]
    notes = tmp_path / "pairs.jsonl"
    rows = [*above, *below, *others]
    notes.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={tmp_path / 'out'}",
        "data.workers=1", "data.tasks=1", "data.heldout_fraction=0.0",
        "data.near_dedup.enabled=true",
        f"data.sources=[{{name: pairs, domain: code, files: ['{notes}']}}]"])
    manifest = preprocess(config, progress=False)
    entry = manifest["sources"]["pairs"]
    assert entry["skipped"]["near_duplicate"] == 1
    assert entry["docs_written"] == len(rows) - 1
    # the removed one is from the 0.72 pair: both 0.68 documents are in the output
    from megatron_rrtf.data.indexed import open_indexed
    from megatron_rrtf.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_tokenizer_path))
    dataset = open_indexed(tmp_path / "out" / "pairs.train", entry["splits"]["train"])
    written = {tokenizer.decode(dataset[i][:-1].tolist()) for i in range(len(dataset))}
    assert set(below) <= written and len(set(above) & written) == 1


def test_exact_jaccard_of_shingle_hashes_matches_the_shingle_sets():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = "".join(program(rng, 20))
        lines = a.splitlines(keepends=True)
        for i in rng.choice(len(lines), size=rng.integers(1, 10), replace=False):
            lines[i] = f"x{rng.integers(0, 99)} = {rng.integers(0, 99)}\n"
        b = "".join(lines)
        hashes = shingle_hashes(b, 5)
        assert hashes.size == len(code_shingles(b, 5))
        assert np.all(np.diff(hashes.astype(np.float64)) >= 0)
        assert exact_jaccard(shingle_hashes(a, 5), hashes) == jaccard(a, b)
