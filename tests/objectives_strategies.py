"""Shared test fixtures for the objectives tests: special ids, a char-level tokenizer and
hypothesis strategies for packed samples (documents cut at both sample edges)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st

from megatron_rrtf.objectives.packing import PackedDocument
from megatron_rrtf.tokenizer.special_tokens import NUM_MASK_SENTINELS, SpecialTokenIds

IDS = SpecialTokenIds(eod=0, pad=1, sep=2, eom=3, fim_prefix=4, fim_middle=5, fim_suffix=6,
                      fim_pad=7, masks=tuple(range(8, 8 + NUM_MASK_SENTINELS)))
OFFSET = 8 + NUM_MASK_SENTINELS
"""First ordinary token id; every id below is special."""
VOCAB = 40
"""Ordinary ids used in generated documents: OFFSET .. OFFSET + VOCAB - 1."""


def char_encode(text: str) -> list[int]:
    """Char-level tokenizer: one id per code point, exactly invertible for any ordinary ids."""
    return [ord(c) + OFFSET for c in text]


def char_decode(ids: Sequence[int]) -> str:
    return "".join(chr(int(i) - OFFSET) for i in ids)


def merging_encode(text: str) -> list[int]:
    """Char-level, except that 'ab' becomes one id: re-encoding a split can shorten a document,
    as a BPE tokenizer does."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("ab", i):
            out.append(MERGED_AB)
            i += 2
        else:
            out.append(ord(text[i]) + OFFSET)
            i += 1
    return out


MERGED_AB = OFFSET + 1000


def merging_decode(ids: Sequence[int]) -> str:
    return "".join("ab" if i == MERGED_AB else chr(int(i) - OFFSET) for i in ids)


@st.composite
def packed_samples(draw, max_seq_len=80, alphabet=None, max_doc=40):
    """(raw [seq_len + 1], seq_len): documents joined by EOD, cut at a random start offset so the
    first and last documents are usually partial; empty documents occur."""
    seq_len = draw(st.integers(1, max_seq_len))
    tokens = st.integers(OFFSET, OFFSET + VOCAB - 1) if alphabet is None else \
        st.sampled_from([ord(c) + OFFSET for c in alphabet])
    docs = draw(st.lists(st.lists(tokens, max_size=max_doc), min_size=1, max_size=10))
    start = draw(st.integers(0, 30))
    stream: list[int] = []
    while len(stream) < start + seq_len + 1:
        for doc in docs:
            stream += doc + [IDS.eod]
    return np.array(stream[start:start + seq_len + 1], dtype=np.int64), seq_len


def stream_of(sample) -> np.ndarray:
    """The laid-out stream a Sample was cut from: tokens followed by the last label."""
    return np.append(sample.tokens, sample.labels[-1])


def assert_documents_restored(restored: list[PackedDocument], original: list[PackedDocument]):
    """Every restored document equals the original one; the last may be a prefix of it."""
    assert 1 <= len(restored) <= len(original)
    for got, want in zip(restored[:-1], original):
        assert got.tokens.tolist() == want.tokens.tolist()
        assert want.ends_with_eod
    last, want = restored[-1], original[len(restored) - 1]
    assert want.tokens[: len(last.tokens)].tolist() == last.tokens.tolist()


def assert_sample_shape(sample, seq_len: int) -> None:
    assert sample.tokens.shape == sample.labels.shape == sample.loss_mask.shape == (seq_len,)
    assert sample.tokens.dtype == np.int64 and sample.labels.dtype == np.int64
    assert sample.loss_mask.dtype == np.float32
    assert set(np.unique(sample.loss_mask)) <= {0.0, 1.0}
    assert isinstance(sample.prefix_len, int) and 0 <= sample.prefix_len <= seq_len
    assert (sample.tokens[1:] == sample.labels[:-1]).all()   # one stream, shifted by one
    assert sample.doc_ids.shape == sample.prefix_mask.shape == (seq_len,)
    assert sample.prefix_mask.dtype == bool
    assert (np.diff(sample.doc_ids) >= 0).all()              # documents in order, each one run


def document_runs(doc_ids: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of one document id."""
    starts = np.flatnonzero(np.diff(doc_ids, prepend=doc_ids[0] - 1))
    return list(zip(starts.tolist(), np.append(starts[1:], len(doc_ids)).tolist()))


def assert_eod_ends_its_document(sample, ids) -> None:
    """An EOD input belongs to the document it ends: the next input starts a new one."""
    eods = np.flatnonzero(sample.tokens == ids.eod)
    for t in eods[eods < len(sample.tokens) - 1]:
        assert sample.doc_ids[t + 1] == sample.doc_ids[t] + 1
