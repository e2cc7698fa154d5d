"""Fill-in-the-middle (bigcode/StarCoder), per document of a packed sample.

With probability fim_rate a document is decoded to text, split at two character positions drawn
uniformly from [0, len(text)] (so any part may be empty), the three parts are encoded separately
and laid out as

    PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle   (probability fim_spm_rate)

followed by the document's EOD when it had one, so at inference the model writes the middle and
then EOD. SPM is the variant bigcode's Megatron-LM and StarCoder train on ("variant 2" of
Bavarian et al. 2022): both sentinels first, then the suffix, then prefix and middle as one
left-to-right run, which keeps the prefix -> middle boundary contiguous for the tokenizer.

Length: documents are laid out in order until the seq_len + 1 stream is full. A FIM document
that overflows has its *suffix* truncated (as bigcode does per document) so the middle, the
trained target, stays whole; if the suffix is too short for that, the document is kept
unchanged and cut like causal LM. Documents after it are dropped; a short stream (re-encoding
may merge tokens) is padded with <fim_pad>, out of the loss. A document whose re-encoded parts
would contain special ids (text that spells a special token) stays unchanged.

Documents: each document's piece (FIM layout or plain, with its EOD) is one document
(`Sample.doc_ids`); trailing <fim_pad> is a segment of its own.

Loss: on every label except <fim_pad> and <pad>, as StarCoder trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from megatron_rrtf.config.objectives import FimConfig
from megatron_rrtf.objectives.packing import check_raw, split_documents
from megatron_rrtf.objectives.sample import Sample, sample_from_stream
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds

Encode = Callable[[str], list[int]]
Decode = Callable[[Sequence[int]], str]


def fim_split(text: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """Prefix, middle, suffix at two character points drawn uniformly (prefix+middle+suffix is
    always text)."""
    a, b = sorted(rng.integers(0, len(text) + 1, size=2).tolist())
    return text[:a], text[a:b], text[b:]


def fim_layout(prefix: np.ndarray, middle: np.ndarray, suffix: np.ndarray, spm: bool,
               ids: SpecialTokenIds) -> np.ndarray:
    """PSM or SPM token layout of one document (without its EOD)."""
    if spm:
        parts = ([ids.fim_prefix, ids.fim_suffix], suffix, [ids.fim_middle], prefix, middle)
    else:
        parts = ([ids.fim_prefix], prefix, [ids.fim_suffix], suffix, [ids.fim_middle], middle)
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def fim_sample(raw: np.ndarray, ids: SpecialTokenIds, seq_len: int, rng: np.random.Generator,
               config: FimConfig, encode: Encode, decode: Decode) -> Sample:
    """FIM-transform each document of one packed sample; see the module docstring."""
    raw = check_raw(raw, seq_len)
    budget = seq_len + 1
    special = np.array(sorted(ids.all_ids()), dtype=np.int64)
    pieces: list[np.ndarray] = []
    used = 0
    for doc in split_documents(raw, ids.eod):
        room = budget - used
        if room <= 0:
            break
        eod = np.array([ids.eod] if doc.ends_with_eod else [], dtype=np.int64)
        apply = rng.random() < config.fim_rate
        spm = rng.random() < config.fim_spm_rate
        piece = np.concatenate((doc.tokens, eod))
        text = decode(doc.tokens.tolist()) if apply and len(doc.tokens) else ""
        if text:
            parts = [np.asarray(encode(t), dtype=np.int64) for t in fim_split(text, rng)]
            if not any(np.isin(p, special).any() for p in parts):
                prefix, middle, suffix = parts
                excess = len(prefix) + len(middle) + len(suffix) + 3 + len(eod) - room
                if excess > 0 and len(suffix) >= excess:
                    suffix = suffix[:len(suffix) - excess]
                piece = np.concatenate((fim_layout(prefix, middle, suffix, spm, ids), eod))
                if len(piece) > room:  # suffix too short to absorb the overflow
                    piece = np.concatenate((doc.tokens, eod))
        piece = piece[:room]
        pieces.append(piece)
        used += len(piece)
    pieces.append(np.full(budget - used, ids.fim_pad, dtype=np.int64))
    stream = np.concatenate(pieces)                                        # [s+1]
    doc_of = np.concatenate([np.full(len(p), d, dtype=np.int32)             # padding: its own
                             for d, p in enumerate(pieces)])
    loss = (stream != ids.fim_pad) & (stream != ids.pad)
    return sample_from_stream(stream, loss, "fim", doc_of)


def invert_fim_stream(stream: np.ndarray, ids: SpecialTokenIds, decode: Decode) -> list[str]:
    """Text of every document in a laid-out FIM stream (tokens followed by the last label), FIM
    documents put back in prefix, middle, suffix order. The last document may be cut (its
    suffix truncated, or the document itself)."""
    s = np.asarray(stream, dtype=np.int64)
    kept = np.flatnonzero(s != ids.fim_pad)           # padding only ever trails the stream
    s = s[: kept[-1] + 1] if len(kept) else s[:0]
    texts: list[str] = []
    for doc in split_documents(s, ids.eod):
        t = doc.tokens.tolist()
        if not t or t[0] != ids.fim_prefix:
            texts.append(decode(t))
            continue
        suffix_at = t.index(ids.fim_suffix)
        middle_at = t.index(ids.fim_middle)
        if suffix_at == 1:   # SPM (or PSM with an empty prefix: same tokens, same text)
            texts.append(decode(t[middle_at + 1:]) + decode(t[2:middle_at]))
        else:                # PSM
            texts.append(decode(t[1:suffix_at]) + decode(t[middle_at + 1:])
                         + decode(t[suffix_at + 1:middle_at]))
    return texts
