"""Tokenizer: exact round trips for code, special tokens as single ids, one loader for all kinds."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import pytest

from megatron_rrtf.errors import TokenizerError
from megatron_rrtf.tokenizer import load_tokenizer, special_tokens
from megatron_rrtf.tokenizer.train import chunk_text, train_tokenizer

ROUND_TRIP_CASES = [
    "def f(x):\n\tif x:\n\t\treturn 1\n",
    "x = 1   \ny = 2\t\n",
    "a\n\n\n\nb\n",
    " " * 40 + "deeply_indented()\n",
    "line one\r\nline two\r\n",
    "s = 'é€😀 中文字符 한국어'\n",
    "",
    "   ",
    "\n",
    "<|endoftext|>x<pad>",
    "12345678901234567890",
]


@pytest.mark.parametrize("text", ROUND_TRIP_CASES)
def test_decode_of_encode_is_exact(tiny_tokenizer, text):
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


def test_each_special_token_is_exactly_one_id(tiny_tokenizer):
    ids = []
    for token in special_tokens():
        encoded = tiny_tokenizer.encode(token)
        assert len(encoded) == 1, (token, encoded)
        assert tiny_tokenizer.token_to_id(token) == encoded[0]
        assert tiny_tokenizer.id_to_token(encoded[0]) == token
        ids.append(encoded[0])
    # in the order special_tokens() lists them, right after <unk>
    assert ids == list(range(1, len(special_tokens()) + 1))
    special = tiny_tokenizer.special_ids
    assert special.eod == tiny_tokenizer.eod == 1
    assert special.pad == tiny_tokenizer.pad == 2
    assert len(special.all_ids()) == len(special_tokens())


def test_special_token_inside_code_stays_one_id(tiny_tokenizer):
    ids = tiny_tokenizer.encode("a = 1<|endoftext|>b = 2")
    assert ids.count(tiny_tokenizer.eod) == 1


def test_long_line_is_chunked_not_dropped():
    text = "x" * 10_000 + "\n" + "y = 2\n" * 3
    chunks = list(chunk_text(text, 2048))
    assert "".join(chunks) == text
    assert max(map(len, chunks)) <= 2048


def test_tokenizer_pickles_to_the_same_behaviour(tiny_tokenizer):
    clone = pickle.loads(pickle.dumps(tiny_tokenizer))
    assert clone.encode("def g(): pass\n") == tiny_tokenizer.encode("def g(): pass\n")
    assert clone.fingerprint == tiny_tokenizer.fingerprint
    assert len(tiny_tokenizer.fingerprint) == 64
    assert tiny_tokenizer.unique_identifiers["fingerprint"] == tiny_tokenizer.fingerprint


def test_load_tokenizer_errors_name_the_path(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="bad.model"):
        load_tokenizer(bad)
    with pytest.raises(TokenizerError, match="neither"):
        load_tokenizer(tmp_path)


def test_too_small_vocab_is_refused(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("hello\n")
    with pytest.raises(TokenizerError, match="vocab-size 100 is too small"):
        train_tokenizer([f], 100, tmp_path / "t")
    with pytest.raises(TokenizerError, match="do not exist"):
        train_tokenizer([tmp_path / "missing.txt"], 1000, tmp_path / "t")


def test_vocab_size_errors_point_the_right_way(tmp_path):
    """Too many distinct characters for the vocabulary: raise it (to the size sentencepiece
    names); too little text for the vocabulary: one message with the largest size that works,
    and that size then trains."""
    from megatron_rrtf.tokenizer.train import train_tokenizer_from_texts

    many_chars = "".join(chr(0x4E00 + i) + " " for i in range(700))
    with pytest.raises(TokenizerError, match=r"too small.*raise .*vocab-size to >= (\d+)") as small:
        train_tokenizer_from_texts([many_chars * 3], 400, tmp_path / "a")
    need = int(re.search(r">= (\d+)", str(small.value)).group(1))
    assert need > 700
    little = "def f(x):\n    return x + 1\n" * 20
    with pytest.raises(TokenizerError, match=r"too large.*at most (\d+) pieces") as large:
        train_tokenizer_from_texts([little], 5000, tmp_path / "b")
    most = int(re.search(r"at most (\d+)", str(large.value)).group(1))
    assert train_tokenizer_from_texts([little], most, tmp_path / "c").is_file()


def save_byte_level_hf_tokenizer(path, texts: list[str], vocab_size: int, eos: str,
                                 **tokenizer_kwargs) -> None:
    """A byte-level BPE trained on `texts`, saved as an HF tokenizer directory at `path`."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=eos,
                            **tokenizer_kwargs).save_pretrained(path)


def test_hf_tokenizer_without_objective_tokens_works_for_causal_lm(tmp_path):
    """A HF tokenizer lacking <sep>/<mask_k> loads and encodes; special_ids names what is missing."""
    save_byte_level_hf_tokenizer(tmp_path, ["def f(x): return x\n"] * 20, 300, "<|endoftext|>")
    tok = load_tokenizer(tmp_path)
    assert tok.decode(tok.encode("def f(x):\n  return x\n")) == "def f(x):\n  return x\n"
    assert tok.eod == tok.token_to_id("<|endoftext|>")
    assert tok.pad == tok.eod  # no <pad>: padding falls back to EOD
    with pytest.raises(TokenizerError, match="<sep>.*<mask_1>"):
        _ = tok.special_ids
    assert pickle.loads(pickle.dumps(tok)).encode("x") == tok.encode("x")


def test_hf_tokenizer_encodes_documents_longer_than_model_max_length_quietly(tmp_path, caplog,
                                                                           capfd):
    """Documents (and infill prefixes) are longer than a model's context by design: no
    transformers 'Token indices sequence length is longer' warning (make demo printed it)."""
    save_byte_level_hf_tokenizer(tmp_path, ["x = 1\n"] * 20, 280, "<|endoftext|>",
                                 model_max_length=8)
    tok = load_tokenizer(tmp_path)
    with caplog.at_level("WARNING"):
        assert len(tok.encode("x = 1\n" * 40)) > 8
        assert all(len(ids) > 8 for ids in tok.encode_batch(["x = 1\n" * 40] * 2))
    printed = capfd.readouterr()  # transformers may print through its own handler
    assert "Token indices sequence length" not in caplog.text + printed.out + printed.err


def test_cli_trains_a_tokenizer(tmp_path):
    f = tmp_path / "code.py"
    f.write_text("def add(a, b):\n    return a + b\n" * 200 + "print('héllo')\n")
    out = subprocess.run(
        [sys.executable, "-m", "mrrtf", "tokenizer", "train", "--input", str(f),
         "--vocab-size", "320", "--out", str(tmp_path / "tok")],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    tok = load_tokenizer(tmp_path / "tok.model")
    assert tok.vocab_size == 320
    assert tok.decode(tok.encode("def add(a, b):\n")) == "def add(a, b):\n"


def test_hf_tokenizer_without_endoftext_uses_its_eos(tmp_path):
    save_byte_level_hf_tokenizer(tmp_path, ["hello world\n"] * 10, 280, "</s>")
    tok = load_tokenizer(tmp_path)
    assert tok.eod == tok.token_to_id("</s>")
