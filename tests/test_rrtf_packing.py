"""Packed (shared prompt + block mask) and padded layouts give the same per-candidate log-probs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.errors import DataError
from megatron_rrtf.rrtf.packing import (
    CandidateGroup,
    candidate_logprobs,
    encode_prompt_response,
    pack_candidates,
    pad_candidates,
    to_prompt_grid,
)
from tests.rrtf_helpers import TinyCausalLM


def make_groups(seed=0, n_groups=3, k=4):
    g = torch.Generator().manual_seed(seed)
    groups = []
    for _ in range(n_groups):
        p = torch.randint(1, 50, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g)
        rs = [torch.randint(1, 50, (int(torch.randint(1, 20, (1,), generator=g)),), generator=g)
              for _ in range(k)]
        groups.append(CandidateGroup(p.tolist(), [r.tolist() for r in rs]))
    return groups


def logprobs(model, batch):
    logits = model(batch.tokens, batch.position_ids, batch.attention_mask)
    return candidate_logprobs(logits, batch)


@pytest.mark.parametrize("max_len", [None, 40, 200])
def test_packed_and_padded_layouts_give_the_same_candidate_logprobs(max_len):
    torch.manual_seed(0)
    model = TinyCausalLM().double().eval()  # float64: compare layouts, not rounding
    groups = make_groups()
    with torch.no_grad():
        padded, lens_a = logprobs(model, pad_candidates(groups))
        packed, lens_b = logprobs(model, pack_candidates(groups, max_len=max_len))
    assert torch.equal(lens_a, lens_b)
    assert torch.allclose(padded, packed, atol=1e-5, rtol=0)


def test_each_candidate_matches_an_unpadded_single_forward():
    torch.manual_seed(1)
    model = TinyCausalLM().double().eval()  # float64: compare layouts, not rounding
    groups = make_groups(seed=3, n_groups=2, k=3)
    with torch.no_grad():
        packed, _ = logprobs(model, pack_candidates(groups))
        flat = 0
        for group in groups:
            for resp in group.responses:
                toks = torch.tensor([list(group.prompt) + list(resp)])
                s = toks.shape[1]
                mask = ~torch.ones(s, s, dtype=torch.bool).tril().view(1, 1, s, s)
                logp = model(toks, torch.arange(s).unsqueeze(0), mask)[0].log_softmax(-1)
                p = len(group.prompt)
                ref = logp[p - 1:s - 1].gather(1, toks[0, p:].unsqueeze(1)).sum()
                assert packed[flat].item() == pytest.approx(ref.item(), abs=1e-5)
                flat += 1


def test_packed_mask_shares_the_prompt_and_isolates_responses():
    groups = [CandidateGroup([1, 2], [[3, 4], [5]])]
    b = pack_candidates(groups)
    allowed = ~b.attention_mask[0, 0]
    assert b.tokens.tolist() == [[1, 2, 3, 4, 5]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 2]]
    assert allowed[4].tolist() == [True, True, False, False, True]     # sees prompt + itself
    assert allowed[3].tolist() == [True, True, True, True, False]
    # first token of each response is predicted from the prompt's last position (col 1)
    assert b.pred_col.tolist() == [1, 2, 1] and b.target.tolist() == [3, 4, 5]


def test_packing_reduces_computed_slots_and_splits_long_groups():
    groups = [CandidateGroup([1] * 10, [[2] * n for n in (5, 30, 8, 12)])]
    padded, packed = pad_candidates(groups), pack_candidates(groups, max_len=40)
    assert packed.num_tokens < padded.num_tokens
    assert packed.tokens.shape[1] <= 40
    with pytest.raises(DataError, match="exceed max_len=20"):
        pack_candidates(groups, max_len=20)


def test_to_prompt_grid_round_trips_to_the_loss_layout():
    groups = [CandidateGroup([1], [[2], [3], [4]]), CandidateGroup([1], [[5]])]
    b = pack_candidates(groups)
    grid, valid = to_prompt_grid(torch.arange(4.0), b)
    assert grid.tolist() == [[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def test_encode_prompt_response_masks_the_prompt():
    enc = lambda s: [ord(c) for c in s]  # noqa: E731
    tokens, labels, mask = encode_prompt_response(enc, "ab", "cd", eos_id=0)
    assert tokens == [97, 98, 99, 100, 0]
    assert [lab for lab, m in zip(labels, mask) if m] == [99, 100, 0]


def test_layouts_agree_on_a_tiny_hf_llama_with_a_4d_mask():
    """HF takes a 4D bool mask with True = attend (megatron's is True = masked): negate."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128,
                      attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).double().eval()
    groups = make_groups(seed=5, n_groups=2, k=3)

    def run(batch):
        out = model(input_ids=batch.tokens, position_ids=batch.position_ids,
                    attention_mask=~batch.attention_mask)
        return candidate_logprobs(out.logits, batch)[0]

    with torch.no_grad():
        padded, packed = run(pad_candidates(groups)), run(pack_candidates(groups, max_len=64))
        unmasked = model(input_ids=pack_candidates(groups).tokens).logits
    assert torch.allclose(padded, packed, atol=1e-5, rtol=0)
    # and the block mask matters: without it the responses would see each other
    assert not torch.allclose(candidate_logprobs(unmasked, pack_candidates(groups))[0], padded,
                              atol=1e-5)


def test_a_long_group_is_split_into_few_balanced_rows():
    groups = [CandidateGroup([1] * 10, [[2] * n for n in (30, 10, 20, 30, 20)])]
    b = pack_candidates(groups, max_len=70)
    assert b.tokens.shape == (2, 70)                     # rows of 70 and 60 real tokens
    real = (b.attention_mask[:, 0].diagonal(dim1=1, dim2=2) == 0) & (b.tokens != 0)
    assert sorted(real.sum(1).tolist()) == [60, 70]
    assert torch.equal(b.lengths, torch.tensor([30, 10, 20, 30, 20]))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.lists(st.integers(1, 12), min_size=1,
                                                      max_size=5)), min_size=1, max_size=3),
       st.sampled_from([None, 30, 60]))
def test_layouts_agree_for_any_group_shapes(shapes, max_len):
    g = torch.Generator().manual_seed(len(shapes))
    groups = [CandidateGroup(torch.randint(1, 50, (p,), generator=g).tolist(),
                             [torch.randint(1, 50, (n,), generator=g).tolist() for n in ns])
              for p, ns in shapes]
    if max_len is not None and any(len(gr.prompt) + max(map(len, gr.responses)) > max_len
                                   for gr in groups):
        max_len = None
    torch.manual_seed(0)
    model = TinyCausalLM().double().eval()
    with torch.no_grad():
        padded, _ = logprobs(model, pad_candidates(groups))
        packed, _ = logprobs(model, pack_candidates(groups, max_len=max_len))
    assert torch.allclose(padded, packed, atol=1e-5, rtol=0)
