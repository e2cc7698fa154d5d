"""FIM: prefix + middle + suffix text is the document text, PSM/SPM layouts are bigcode's, the
sample keeps seq_len and <fim_pad> never counts in the loss."""

import io

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from objectives_strategies import (
    IDS,
    assert_sample_shape,
    char_decode,
    char_encode,
    document_runs,
    merging_decode,
    merging_encode,
    packed_samples,
    stream_of,
)

from megatron_rrtf.config.objectives import FimConfig
from megatron_rrtf.objectives.fim import fim_layout, fim_sample, fim_split, invert_fim_stream
from megatron_rrtf.objectives.packing import split_documents
from megatron_rrtf.tokenizer.special_tokens import (
    NUM_MASK_SENTINELS,
    SpecialTokenIds,
    mask_token,
    special_tokens,
)

rates = st.sampled_from([0.0, 0.5, 1.0])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.integers(0, 2**32 - 1))
def test_split_parts_concatenate_to_the_text(text, seed):
    prefix, middle, suffix = fim_split(text, np.random.default_rng(seed))
    assert prefix + middle + suffix == text


def check_restored(raw, sample, decode):
    texts = invert_fim_stream(stream_of(sample), IDS, decode)
    originals = [decode(d.tokens.tolist()) for d in split_documents(raw, IDS.eod)]
    assert 1 <= len(texts) <= len(originals)
    # the last document may have lost the end of its suffix (or be cut plain): a prefix of it.
    # A FIM document keeps its EOD after a truncated suffix, so it can be followed by an empty one.
    last = len(texts) - 2 if len(texts) > 1 and texts[-1] == "" else len(texts) - 1
    assert texts[:last] == originals[:last]
    assert all(originals[i].startswith(texts[i]) for i in range(last, len(texts)))


@settings(max_examples=200, deadline=None)
@given(packed_samples(), rates, rates, st.integers(0, 2**32 - 1))
def test_fim_restores_every_document_text(packed, fim_rate, spm_rate, seed):
    raw, seq_len = packed
    config = FimConfig(fim_rate=fim_rate, fim_spm_rate=spm_rate)
    sample = fim_sample(raw, IDS, seq_len, np.random.default_rng(seed), config, char_encode,
                        char_decode)
    assert_sample_shape(sample, seq_len)
    assert sample.objective == "fim" and sample.prefix_len == 0
    check_restored(raw, sample, char_decode)
    if fim_rate == 0.0:
        assert (stream_of(sample) == raw).all()
    # each document's piece (its FIM layout and its EOD) is one block, <fim_pad> one of its own
    stream = stream_of(sample)
    for start, end in document_runs(sample.doc_ids):
        block = stream[start:end]
        assert (block == IDS.fim_pad).all() or not (block == IDS.fim_pad).any()
        assert not (block[:-1] == IDS.eod).any()                  # an EOD only ends a block
        assert (block == IDS.fim_prefix).sum() <= 1               # at most one FIM layout


@settings(max_examples=200, deadline=None)
@given(packed_samples(alphabet="abc"), rates, st.integers(0, 2**32 - 1))
def test_shorter_reencoding_is_padded_with_fim_pad_out_of_the_loss(packed, spm_rate, seed):
    raw, seq_len = packed
    config = FimConfig(fim_rate=1.0, fim_spm_rate=spm_rate)
    sample = fim_sample(raw, IDS, seq_len, np.random.default_rng(seed), config, merging_encode,
                        merging_decode)
    assert_sample_shape(sample, seq_len)
    check_restored(raw, sample, merging_decode)
    stream = stream_of(sample)
    padded = stream == IDS.fim_pad
    if padded.any():                                   # padding only trails the stream
        assert padded[np.argmax(padded):].all()
    assert (sample.loss_mask[sample.labels == IDS.fim_pad] == 0).all()
    assert (sample.loss_mask[sample.labels != IDS.fim_pad] == 1).all()


def test_psm_and_spm_layouts_are_bigcodes():
    p, m, s = np.array([30, 31]), np.array([40]), np.array([50, 51, 52])
    psm = fim_layout(p, m, s, spm=False, ids=IDS).tolist()
    spm = fim_layout(p, m, s, spm=True, ids=IDS).tolist()
    assert psm == [IDS.fim_prefix, 30, 31, IDS.fim_suffix, 50, 51, 52, IDS.fim_middle, 40]
    assert spm == [IDS.fim_prefix, IDS.fim_suffix, 50, 51, 52, IDS.fim_middle, 30, 31, 40]


def test_overflowing_document_loses_suffix_tokens_not_its_middle():
    text = "abcdefghijklmnopqrst"
    raw = np.array(char_encode(text), dtype=np.int64)          # one document, no EOD: 20 tokens
    for seed in range(20):
        sample = fim_sample(raw, IDS, 19, np.random.default_rng(seed), FimConfig(fim_rate=1.0,
                            fim_spm_rate=0.0), char_encode, char_decode)
        s = stream_of(sample).tolist()
        if IDS.fim_prefix not in s:
            continue                                           # suffix too short: kept plain
        prefix = char_decode(s[1:s.index(IDS.fim_suffix)])
        middle = char_decode(s[s.index(IDS.fim_middle) + 1:])
        suffix = char_decode(s[s.index(IDS.fim_suffix) + 1:s.index(IDS.fim_middle)])
        assert text.startswith(prefix + middle)                # middle whole, right after prefix
        assert text[len(prefix + middle):].startswith(suffix)  # the suffix lost its end: 3 tokens
        assert len(suffix) == len(text) - len(prefix + middle) - 3


def test_document_spelling_a_special_token_stays_plain():
    # the text decodes to something that the tokenizer re-encodes to a special id
    def encode(text):
        return [IDS.eod] if text == "<E>" else char_encode(text)
    raw = np.array(char_encode("<E>") * 3 + [IDS.eod], dtype=np.int64)
    for seed in range(10):
        sample = fim_sample(raw, IDS, 9, np.random.default_rng(seed), FimConfig(fim_rate=1.0),
                            encode, char_decode)
        stream = stream_of(sample)
        assert (stream == IDS.eod).sum() <= 1


@pytest.fixture(scope="module")
def sentencepiece_model():
    """A tiny BPE model trained here with the project's settings (byte fallback, identity
    normalisation, special tokens as user-defined symbols): real merges and byte pieces."""
    spm = pytest.importorskip("sentencepiece")
    corpus = ["def f(x):\n\treturn x + 1  \n", "class A:\n    pass\n\n# é€😀\n",
              "for i in range(10):\n    print(i)\n"] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=400, model_type="bpe",
        byte_fallback=True, user_defined_symbols=special_tokens(),
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, hard_vocab_limit=False,
        bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    ids = SpecialTokenIds(*(sp.piece_to_id(t) for t in special_tokens()[:8]),
                          masks=tuple(sp.piece_to_id(mask_token(i))
                                      for i in range(1, NUM_MASK_SENTINELS + 1)))
    return sp, ids


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abc de\n\t():_=1é€😀", max_size=40), min_size=1, max_size=6),
       st.integers(1, 60), st.integers(0, 20), rates, st.integers(0, 2**32 - 1))
def test_fim_restores_text_with_a_real_sentencepiece_model(sentencepiece_model, docs, seq_len,
                                                           start, spm_rate, seed):
    sp, ids = sentencepiece_model
    stream: list[int] = []
    while len(stream) < start + seq_len + 1:
        for doc in docs:
            stream += sp.encode(doc) + [ids.eod]
    raw = np.array(stream[start:start + seq_len + 1], dtype=np.int64)   # cuts byte pieces too
    config = FimConfig(fim_rate=1.0, fim_spm_rate=spm_rate)
    sample = fim_sample(raw, ids, seq_len, np.random.default_rng(seed), config, sp.encode,
                        sp.decode)
    assert_sample_shape(sample, seq_len)
    texts = invert_fim_stream(stream_of(sample), ids, sp.decode)
    event(f"FIM documents: {min((stream_of(sample) == ids.fim_prefix).sum(), 2)}+")
    originals = [sp.decode(d.tokens.tolist()) for d in split_documents(raw, ids.eod)]
    last = len(texts) - 2 if len(texts) > 1 and texts[-1] == "" else len(texts) - 1
    assert texts[:last] == originals[:last]
    for i in range(last, len(texts)):   # a truncated suffix may end inside a byte-fallback char
        assert originals[i].startswith(texts[i].rstrip("\ufffd"))
    assert (sample.loss_mask[np.isin(sample.labels, (ids.fim_pad, ids.pad))] == 0).all()
