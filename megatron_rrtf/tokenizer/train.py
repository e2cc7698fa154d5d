"""Train our sentencepiece BPE tokenizer: byte fallback, exact round trip, special tokens as
single pieces (the settings DESIGN.md "Tokenizer" verified)."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer.special_tokens import special_tokens

log = logging.getLogger(__name__)

CHUNK_CHARS = 2048
"""Training sentences are chunks of at most this many characters, cut at line ends where possible.
sentencepiece silently drops sentences longer than max_sentence_length (bytes), so we cut long
lines ourselves and set max_sentence_length to 4 bytes per character: nothing is dropped."""
MAX_SENTENCE_BYTES = 4 * CHUNK_CHARS
MIN_VOCAB_SIZE = 256 + len(special_tokens()) + 16
"""256 byte-fallback pieces + special tokens + <unk> and a few merges."""


def chunk_text(text: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Cut `text` into pieces of <= chunk_chars characters whose concatenation is `text`;
    cuts fall after a newline when one is available."""
    start = 0
    while start < len(text):
        end = min(start + chunk_chars, len(text))
        if end < len(text):
            newline = text.rfind("\n", start, end)
            if newline >= start:
                end = newline + 1
        yield text[start:end]
        start = end


_TOO_SMALL = re.compile(r"smaller than required_chars\. (\d+) vs (\d+)")
_TOO_LARGE = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_VOCAB_KEYS = "data.train_tokenizer.vocab_size / --vocab-size"


def vocab_size_advice(error: str, vocab_size: int) -> str:
    """sentencepiece's training error as one message that says which way to move vocab_size."""
    if match := _TOO_SMALL.search(error):
        need = int(match.group(2))
        return (f"vocab_size {vocab_size} is too small: the training text has more distinct "
                f"characters than that (with the special pieces sentencepiece needs {need}); "
                f"raise {_VOCAB_KEYS} to >= {need}")
    if match := _TOO_LARGE.search(error):
        most = int(match.group(2))
        return (f"vocab_size {vocab_size} is too large for this training text: it supports at "
                f"most {most} pieces; set {_VOCAB_KEYS} <= {most} or give more training text")
    return f"sentencepiece training failed (vocab_size {vocab_size}): {error}"


def train_tokenizer_from_texts(texts: Iterable[str], vocab_size: int, out_prefix: str | Path,
                               max_sentences: int = 300_000, num_threads: int = 2) -> Path:
    """Train on `texts` (documents); write `<out_prefix>.model` and `.vocab` atomically."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise TokenizerError(f"--vocab-size {vocab_size} is too small: need >= {MIN_VOCAB_SIZE} "
                             "(256 byte pieces + special tokens + merges)")
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    counts = {"chunks": 0, "chars": 0}

    def sentences() -> Iterator[str]:
        for text in texts:
            for chunk in chunk_text(text):
                counts["chunks"] += 1
                counts["chars"] += len(chunk)
                yield chunk

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_writer=model, model_type="bpe",
            vocab_size=vocab_size, byte_fallback=True, user_defined_symbols=special_tokens(),
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
            character_coverage=0.9995, max_sentence_length=MAX_SENTENCE_BYTES,
            input_sentence_size=max_sentences, shuffle_input_sentence=True,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, num_threads=num_threads, minloglevel=2,
        )
    except RuntimeError as exc:
        raise TokenizerError(vocab_size_advice(str(exc), vocab_size)) from exc
    if counts["chunks"] == 0:
        raise TokenizerError("no training text: the inputs are empty")
    if counts["chunks"] > max_sentences:
        log.info("sentencepiece sampled %d of %d training chunks (max_sentences)",
                 max_sentences, counts["chunks"])
    model_path = out_prefix.with_name(out_prefix.name + ".model")
    tmp = model_path.with_name(model_path.name + ".tmp")
    tmp.write_bytes(model.getvalue())
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, model_path)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab_path = out_prefix.with_name(out_prefix.name + ".vocab")
    vocab_path.write_text("".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i)}\n"
                                  for i in range(sp.get_piece_size())), encoding="utf-8")
    log.info("trained tokenizer %s: vocab %d from %d chars in %d chunks", model_path,
             sp.get_piece_size(), counts["chars"], counts["chunks"])
    return model_path


def read_text_files(paths: Iterable[str | Path], max_bytes: int | None = None) -> Iterator[str]:
    """UTF-8 text of each file (up to max_bytes in all); invalid UTF-8 names the file."""
    used = 0
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer training input {path} does not exist")
        data = path.read_bytes()
        if max_bytes is not None and used + len(data) > max_bytes:
            log.warning("tokenizer training stops at %d bytes (max); %s and later inputs unused",
                        used, path)
            return
        used += len(data)
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"tokenizer training input {path} is not UTF-8 ({exc})") from exc


def train_tokenizer(inputs: list[str | Path], vocab_size: int, out_prefix: str | Path,
                    max_input_bytes: int | None = None, num_threads: int = 2) -> Path:
    """Train from text files (code or prose, one document each); returns the .model path."""
    if not inputs:
        raise TokenizerError("tokenizer training needs at least one --input file")
    missing = [str(p) for p in inputs if not Path(p).is_file()]
    if missing:
        raise TokenizerError(f"tokenizer training inputs do not exist: {', '.join(missing)}")
    return train_tokenizer_from_texts(read_text_files(inputs, max_input_bytes), vocab_size,
                                      out_prefix, num_threads=num_threads)
