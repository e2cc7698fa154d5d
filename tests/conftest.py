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
