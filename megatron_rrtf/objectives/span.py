"""CodeGen2 span corruption in a decoder, per document of a packed sample.

One document `a b c d e f g` with spans `b c` and `f` becomes

    a <mask_1> d e <mask_2> g <|endoftext|> <sep> <mask_1> b c <eom> <mask_2> f <eom>

and the next document follows right after the last `<eom>`. Per document a masked ratio is drawn
uniformly from [noise_density_min, noise_density_max] (CodeGen2's "dynamic ratio"), the number
of spans is round(masked / mean_span_length) (at most max_spans), and the masked tokens and the
kept tokens are each cut into spans uniformly at random (T5's random segmentation), kept gaps
between two spans being at least one token so spans never touch.

Length: each corrupted document grows by 3k + 1 tokens (k masks, k <eom>, k moved masks, <sep>;
plus the format's EOD when the document had none). Documents are laid out in order until the
stream of seq_len + 1 tokens is full. The document that does not fit whole is shortened to the
longest prefix whose *complete* corrupted form fits (spans re-drawn on that prefix), so every
moved span in a sample ends with its `<eom>`: a sentinel is never followed by a cut span. The rest
(at most a few tokens) is `<pad>`, out of the loss; documents after it are dropped. If fewer than
7 tokens remain, that document's first tokens are kept uncorrupted (a plain causal fragment).

Documents: a corrupted document's context, its EOD, `<sep>` and its moved spans form one
document (`Sample.doc_ids`), so with separate document attention the moved spans see their own
context and nothing of the neighbours; trailing `<pad>` is a segment of its own.

Loss: on each moved span's tokens and its `<eom>` (what the model writes at inference). With
loss_on_context also on the corrupted context and its EOD, but never on a label that is a
sentinel, `<sep>` or `<pad>` (a left-to-right model must not learn to emit sentinels).

Documents are assumed to hold no special ids (the tokenizer encodes special-token text as special
ids; the ingest side keeps them out of documents).
"""

from __future__ import annotations

import numpy as np

from megatron_rrtf.config.objectives import SpanConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.objectives.packing import PackedDocument, check_raw, split_documents
from megatron_rrtf.objectives.sample import Sample, sample_from_stream
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds

# Role of each token of the laid-out stream; it decides the loss.
CONTEXT, STRUCTURE, TARGET, PADDING = 0, 1, 2, 3

MIN_CORRUPTED_DOC = 2
"""A document needs at least 2 tokens to keep one and mask one."""


def span_sample(raw: np.ndarray, ids: SpecialTokenIds, seq_len: int, rng: np.random.Generator,
                config: SpanConfig) -> Sample:
    """Span-corrupt every document of one packed sample; see the module docstring for layout,
    length and loss rules."""
    raw = check_raw(raw, seq_len)
    if config.max_spans > len(ids.masks):
        raise ConfigError(f"objectives.span.max_spans={config.max_spans} needs that many "
                          f"<mask_i> sentinels; the tokenizer has {len(ids.masks)}")
    budget = seq_len + 1
    tokens: list[int] = []
    roles: list[int] = []
    doc_of: list[int] = []   # the document of each laid-out token
    for d, doc in enumerate(split_documents(raw, ids.eod)):
        room = budget - len(tokens)
        if room <= 0:
            break
        ratio = rng.uniform(config.noise_density_min, config.noise_density_max)
        n = len(doc.tokens)
        _, num_spans = span_budget(n, ratio, config)
        full_len = n + 3 * num_spans + 2 if num_spans else n + int(doc.ends_with_eod)
        if full_len <= room:
            _lay_out(doc, ratio, rng, config, ids, tokens, roles)
            doc_of.extend([d] * (len(tokens) - len(doc_of)))
            continue
        prefix_len = _longest_fitting_prefix(n, ratio, config, room)
        if prefix_len:
            _lay_out(PackedDocument(doc.tokens[:prefix_len], False), ratio, rng, config, ids,
                     tokens, roles)
        else:
            plain = np.append(doc.tokens, ids.eod)[:room] if doc.ends_with_eod else \
                doc.tokens[:room]
            tokens.extend(plain.tolist())
            roles.extend([CONTEXT] * len(plain))
        doc_of.extend([d] * (len(tokens) - len(doc_of)))
        break
    pad = budget - len(tokens)
    doc_of.extend([doc_of[-1] + 1 if doc_of else 0] * pad)               # padding: its own
    stream = np.array(tokens + [ids.pad] * pad, dtype=np.int64)          # [s+1]
    role = np.array(roles + [PADDING] * pad, dtype=np.int8)               # [s+1]
    loss = role == TARGET
    if config.loss_on_context:
        loss |= (role == CONTEXT) & ~np.isin(stream, (*ids.masks, ids.sep, ids.pad))
    return sample_from_stream(stream, loss, "span", np.array(doc_of))


def span_budget(n: int, ratio: float, config: SpanConfig) -> tuple[int, int]:
    """(masked tokens, spans) for a document of n tokens at a masked ratio; (0, 0) when the
    document is too short to corrupt."""
    if n < MIN_CORRUPTED_DOC:
        return 0, 0
    num_noise = min(max(round(ratio * n), 1), n - 1)
    num_spans = round(num_noise / config.mean_span_length)
    # k spans need k masked tokens and k - 1 kept tokens between them
    num_spans = min(max(num_spans, 1), config.max_spans, num_noise, n - num_noise + 1)
    return num_noise, num_spans


def draw_spans(n: int, num_noise: int, num_spans: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of num_spans non-overlapping, non-touching spans covering num_noise of
    n tokens, uniform over such segmentations."""
    k = num_spans
    if k == 1:
        lengths = np.array([num_noise])
    else:  # a uniform composition of num_noise into k positive parts
        cuts = np.sort(rng.choice(num_noise - 1, k - 1, replace=False)) + 1
        lengths = np.diff(np.concatenate(([0], cuts, [num_noise])))
    free = n - num_noise - (k - 1)    # kept tokens left once each inner gap holds one
    bars = np.sort(rng.choice(free + k, k, replace=False))    # k + 1 parts, each >= 0
    gaps = np.diff(np.concatenate(([-1], bars, [free + k]))) - 1
    gaps[1:-1] += 1
    starts = np.cumsum(gaps[:-1]) + np.concatenate(([0], np.cumsum(lengths[:-1])))
    return starts, lengths


def _longest_fitting_prefix(n: int, ratio: float, config: SpanConfig, room: int) -> int:
    """Longest m <= n whose corrupted form (m + 3k + 2 tokens) fits in room; 0 if none."""
    for m in range(min(n, room - 2), MIN_CORRUPTED_DOC - 1, -1):
        _, k = span_budget(m, ratio, config)
        if m + 3 * k + 2 <= room:
            return m
    return 0


def _lay_out(doc: PackedDocument, ratio: float, rng: np.random.Generator, config: SpanConfig,
             ids: SpecialTokenIds, tokens: list[int], roles: list[int]) -> None:
    """Append one document's corrupted form (or the document itself if too short) to the
    stream being built."""
    doc_tokens = doc.tokens.tolist()
    n = len(doc_tokens)
    num_noise, num_spans = span_budget(n, ratio, config)
    if num_spans == 0:
        tokens.extend(doc_tokens)
        roles.extend([CONTEXT] * n)
        if doc.ends_with_eod:
            tokens.append(ids.eod)
            roles.append(CONTEXT)
        return
    starts, lengths = draw_spans(n, num_noise, num_spans, rng)
    moved_tokens: list[int] = [ids.sep]
    moved_roles: list[int] = [STRUCTURE]
    cursor = 0
    for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
        tokens.extend(doc_tokens[cursor:start])
        roles.extend([CONTEXT] * (start - cursor))
        tokens.append(ids.masks[i])
        roles.append(STRUCTURE)
        moved_tokens += [ids.masks[i], *doc_tokens[start:start + length], ids.eom]
        moved_roles += [STRUCTURE] + [TARGET] * (length + 1)
        cursor = start + length
    tokens.extend(doc_tokens[cursor:])
    roles.extend([CONTEXT] * (n - cursor))
    tokens.append(ids.eod)
    roles.append(CONTEXT)
    tokens.extend(moved_tokens)
    roles.extend(moved_roles)


def invert_span_stream(stream: np.ndarray, ids: SpecialTokenIds) -> list[PackedDocument]:
    """Undo span corruption on a laid-out stream (tokens followed by the last label): put every
    moved span back in place of its sentinel. Returns the documents in order; the last one may
    be a prefix of the original (shortened to fit). Raises ValueError on a malformed stream."""
    s = np.asarray(stream, dtype=np.int64).tolist()
    while s and s[-1] == ids.pad:
        s.pop()
    mask_index = {m: i for i, m in enumerate(ids.masks)}
    docs: list[PackedDocument] = []
    i = 0
    while i < len(s):
        try:
            end = s.index(ids.eod, i)
        except ValueError:  # an uncorrupted fragment at the end
            if any(t in mask_index for t in s[i:]):
                raise ValueError(f"sentinel in the final uncorrupted fragment at {i}") from None
            docs.append(PackedDocument(np.array(s[i:], dtype=np.int64), False))
            break
        context = s[i:end]
        i = end + 1
        sentinels = [t for t in context if t in mask_index]
        if not sentinels:
            docs.append(PackedDocument(np.array(context, dtype=np.int64), True))
            continue
        if sentinels != list(ids.masks[:len(sentinels)]) or i >= len(s) or s[i] != ids.sep:
            raise ValueError(f"document ending at {end}: sentinels {sentinels} not followed by "
                             "<sep> and their spans")
        i += 1
        spans: list[list[int]] = []
        for sentinel in sentinels:
            if i >= len(s) or s[i] != sentinel:
                raise ValueError(f"expected moved sentinel {sentinel} at {i}")
            close = s.index(ids.eom, i + 1)   # ValueError if the span was cut
            spans.append(s[i + 1:close])
            i = close + 1
        restored: list[int] = []
        for t in context:
            restored.extend(spans[mask_index[t]] if t in mask_index else [t])
        docs.append(PackedDocument(np.array(restored, dtype=np.int64), True))
    return docs
