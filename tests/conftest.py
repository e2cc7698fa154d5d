"""Shared fixtures: a tiny sentencepiece tokenizer trained here, from the stdlib and made-up text."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

TINY_TOKENIZER_VOCAB = 1200


def tiny_training_texts() -> list[str]:
    """~400 KB: the first stdlib .py files (sorted, so deterministic) plus a little prose."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, size = [], 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text)
        if size > 400_000:
            break
    prose = ("The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces; "
             "a model predicts the next piece. Café, naïve, 東京, 数据.\n")
    texts.append(prose * 50)
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a ~1200-piece BPE .model with every special token (trains in ~1 s)."""
    from megatron_rrtf.tokenizer.train import train_tokenizer_from_texts

    out = tmp_path_factory.mktemp("tiny_tokenizer") / "tiny"
    return train_tokenizer_from_texts(tiny_training_texts(), TINY_TOKENIZER_VOCAB, out)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path: Path):
    """The tiny tokenizer loaded through load_tokenizer (a SentencePieceTokenizer)."""
    from megatron_rrtf.tokenizer import load_tokenizer

    return load_tokenizer(tiny_tokenizer_path)


def write_tiny_corpus(root: Path) -> dict[str, Path]:
    """A small code dir (stdlib .py files) and a prose .jsonl, written under `root`."""
    import json

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = root / "code"
    code.mkdir(parents=True)
    for path in sorted(stdlib.glob("*.py"))[:40]:
        text = path.read_text(encoding="utf-8", errors="replace")
        if max(map(len, text.splitlines()), default=0) <= 1000:
            (code / path.name).write_text(text[:20_000], encoding="utf-8")
    prose = root / "prose.jsonl"
    with open(prose, "w", encoding="utf-8") as f:
        for i in range(60):
            sentence = f"Paragraph {i} tells of rivers, hills and the number {i * 7}. "
            f.write(json.dumps({"text": sentence * (3 + i % 5)}) + "\n")
    return {"code": code, "prose": prose}


@pytest.fixture(scope="session")
def tiny_data_config(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_path: Path):
    """A RunConfig (seq_length 32) whose two sources (code/python dir, nl jsonl) are already
    preprocessed with tiny_tokenizer; use with tiny_tokenizer in stream tests."""
    from megatron_rrtf.config import load_config
    from megatron_rrtf.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("tiny_data")
    paths = write_tiny_corpus(root)
    config = load_config([], [
        f"data.tokenizer={tiny_tokenizer_path}", f"data.output_dir={root / 'out'}",
        "data.workers=1", "data.heldout_fraction=0.1", "model.seq_length=32",
        f"data.sources=[{{name: py, domain: code, language: python, dir: '{paths['code']}', "
        f"glob: '*.py', weight: 3}}, {{name: prose, domain: nl, files: ['{paths['prose']}'], "
        "weight: 1}]",
    ])
    preprocess(config, progress=False)
    return config


@pytest.fixture
def world_of_one():
    """megatron's process groups for one process (TP = PP = 1, seed 0) for the test's duration,
    torn down after it (as every library call that needs them does)."""
    from megatron_rrtf.config import ParallelConfig
    from megatron_rrtf.parallel.init import process_groups

    with process_groups(ParallelConfig(), seed=0):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared CPU, threads only wait for each other.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
