"""Infill prompts are exactly the prefix of what training laid out, and the middle is cut at the
stop token."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_strategies import IDS, char_decode, char_encode, stream_of

from megatron_rrtf.config.objectives import FimConfig, SpanConfig
from megatron_rrtf.objectives.fim import fim_sample
from megatron_rrtf.objectives.prompts import extract_middle, fim_prompt, span_infill_prompt
from megatron_rrtf.objectives.span import span_sample

letters = st.text(alphabet="abcdefgh \n", min_size=4, max_size=30)


@settings(max_examples=100, deadline=None)
@given(letters, st.integers(0, 2**32 - 1))
def test_span_prompt_is_the_training_layout_up_to_the_middle(text, seed):
    raw = np.array(char_encode(text) + [IDS.eod] * 8, dtype=np.int64)   # room for the layout
    config = SpanConfig(max_spans=1)           # one span: the infill case
    s = stream_of(span_sample(raw, IDS, len(raw) - 1, np.random.default_rng(seed), config))
    s = s.tolist()
    cut = s.index(IDS.masks[0])
    prefix, suffix = char_decode(s[:cut]), char_decode(s[cut + 1:s.index(IDS.eod)])
    prompt = span_infill_prompt(prefix, suffix, char_encode, IDS)
    assert s[:len(prompt.prompt_ids)] == prompt.prompt_ids
    generated = s[len(prompt.prompt_ids):]
    middle = extract_middle(generated, prompt.stop_ids)
    assert prefix + char_decode(middle) + suffix == text
    assert generated[len(middle)] == IDS.eom == prompt.stop_ids[0]


@settings(max_examples=100, deadline=None)
@given(letters, st.sampled_from([0.0, 1.0]), st.integers(0, 2**32 - 1))
def test_fim_prompt_is_the_training_layout_up_to_the_middle(text, spm_rate, seed):
    raw = np.array(char_encode(text) + [IDS.eod] * 4, dtype=np.int64)
    config = FimConfig(fim_rate=1.0, fim_spm_rate=spm_rate)
    s = stream_of(fim_sample(raw, IDS, len(raw) - 1, np.random.default_rng(seed), config,
                             char_encode, char_decode)).tolist()
    doc = s[:s.index(IDS.eod) + 1]
    suffix_start, middle_at = doc.index(IDS.fim_suffix), doc.index(IDS.fim_middle)
    suffix = char_decode(doc[suffix_start + 1:middle_at])
    if spm_rate:   # prefix and middle form one run; with one token per char any split of it
        rest = char_decode(doc[middle_at + 1:-1])      # is the prefix some draw would have made
        mode, prefix = "spm", rest[: len(rest) // 2]
    else:
        mode, prefix = "psm", char_decode(doc[1:suffix_start])
    prompt = fim_prompt(prefix, suffix, char_encode, IDS, mode)
    assert doc[:len(prompt.prompt_ids)] == prompt.prompt_ids
    middle = extract_middle(doc[len(prompt.prompt_ids):], prompt.stop_ids)
    assert prefix + char_decode(middle) + suffix == text
    assert prompt.stop_ids == (IDS.eod,)


def test_prompt_layouts_exactly():
    enc = char_encode
    p, s = enc("ab"), enc("c")
    assert span_infill_prompt("ab", "c", enc, IDS).prompt_ids == \
        [*p, IDS.masks[0], *s, IDS.eod, IDS.sep, IDS.masks[0]]
    assert fim_prompt("ab", "c", enc, IDS, "psm").prompt_ids == \
        [IDS.fim_prefix, *p, IDS.fim_suffix, *s, IDS.fim_middle]
    assert fim_prompt("ab", "c", enc, IDS, "spm").prompt_ids == \
        [IDS.fim_prefix, IDS.fim_suffix, *s, IDS.fim_middle, *p]
    with pytest.raises(ValueError, match="'msp'"):
        fim_prompt("a", "b", enc, IDS, "msp")


def test_extract_middle_stops_at_first_stop_or_keeps_all():
    assert extract_middle([5, 6, IDS.eom, 7], (IDS.eom,)) == [5, 6]
    assert extract_middle([5, 6], (IDS.eom,)) == [5, 6]
    assert extract_middle([IDS.eod], (IDS.eod,)) == []
