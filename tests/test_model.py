"""The megatron-core model: parameter counts, attention backends, prefix-LM masks, CPU compat."""

import pytest
import torch

from megatron_rrtf.config import load_config
from megatron_rrtf.model import attention
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.parallel import cpu_compat
from megatron_rrtf.parallel.init import set_seed

pytestmark = [pytest.mark.xdist_group("model"), pytest.mark.usefixtures("world_of_one")]
SEQ = 24


def _model(family="starcoder", backend="sdpa", layers=2, seed=0):
    cfg = load_config("configs/tiny.yaml", [f"model.family={family}", f"model.num_layers={layers}",
                                            "model.hidden_size=64", f"model.seq_length={SEQ}",
                                            f"model.attention_backend={backend}"])
    set_seed(seed)
    return build_gpt_model(cfg, 128).eval()


def _logits(model, tokens, mask=None):
    pos = torch.arange(tokens.shape[1])[None].expand(tokens.shape[0], -1)
    return model(tokens, pos, mask)


@pytest.mark.parametrize("preset, nominal", [("1b", 0.9e9), ("3_7b", 3.1e9), ("7b", 5.9e9),
                                             ("16b", 13.6e9), ("starcoder_15b", 15.8e9)])
def test_preset_parameter_count_matches_formula(preset, nominal):
    cfg = load_config(f"configs/{preset}.yaml", ["parallel.tensor_parallel=1",
                                                 "parallel.pipeline_parallel=1"])
    vocab = cfg.model.padded_vocab_size(cfg.model.vocab_size)
    with torch.device("meta"):  # the real megatron module tree, without allocating weights
        model = build_gpt_model(cfg, vocab)
    count = sum(p.numel() for p in model.parameters())
    assert count == cfg.model.num_parameters(vocab)
    assert abs(count - nominal) / nominal < 0.02


def test_starcoder_15b_preset_is_starcoder_shaped():
    m = load_config("configs/starcoder_15b.yaml").model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups,
            m.seq_length) == (40, 6144, 48, 1, 8192)


@pytest.mark.parametrize("family", ["starcoder", "rope"])
def test_sdpa_backend_matches_megatron_local_attention(family):
    tokens = torch.randint(0, 128, (2, SEQ), generator=torch.Generator().manual_seed(1))
    local = _logits(_model(family, "local", seed=5), tokens)
    sdpa = _logits(_model(family, "sdpa", seed=5), tokens)
    torch.testing.assert_close(sdpa, local, atol=1e-5, rtol=1e-5)


def test_prefix_lm_mask_is_bidirectional_over_prefix_and_causal_after():
    model = _model(seed=3)
    p = 10
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 128, (1, SEQ), generator=g)
    prefix = torch.tensor([p])
    base = _logits(model, tokens, prefix)
    # A token after the prefix never moves outputs at earlier positions (causal after p).
    for j in (p, p + 5, SEQ - 1):
        changed = tokens.clone()
        changed[0, j] = (changed[0, j] + 1) % 128
        out = _logits(model, changed, prefix)
        torch.testing.assert_close(out[:, :j], base[:, :j], atol=0, rtol=0)
        assert not torch.allclose(out[:, j:], base[:, j:])
    # A token inside the prefix moves outputs at earlier positions (bidirectional prefix),
    # which the causal model never does.
    j = 7
    changed = tokens.clone()
    changed[0, j] = (changed[0, j] + 1) % 128
    assert not torch.allclose(_logits(model, changed, prefix)[:, :j], base[:, :j])
    causal = _logits(model, tokens)
    torch.testing.assert_close(_logits(model, changed)[:, :j], causal[:, :j], atol=0, rtol=0)


def test_prefix_length_zero_and_one_equal_causal():
    model = _model(seed=4)
    tokens = torch.randint(0, 128, (2, SEQ), generator=torch.Generator().manual_seed(3))
    causal = _logits(model, tokens)
    for p in (0, 1):
        torch.testing.assert_close(_logits(model, tokens, torch.tensor([p, p])), causal)


def test_prefix_lengths_equal_dense_mask():
    model = _model(seed=6)
    tokens = torch.randint(0, 128, (3, SEQ), generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([0, 5, SEQ])
    dense = attention.prefix_lm_dense_mask(lengths, SEQ)
    torch.testing.assert_close(_logits(model, tokens, lengths), _logits(model, tokens, dense))


@pytest.mark.parametrize("heads, groups", [(4, 1), (4, 2), (4, 4)])
def test_two_call_prefix_lm_split_equals_dense_mask(heads, groups):
    """The GPU path (two varlen attention calls, no s x s mask), run with a CPU reference of
    flash_attn_varlen_func, equals SDPA with the dense prefix-LM mask."""
    g = torch.Generator().manual_seed(0)
    b, s, d = 4, 19, 8
    q = torch.randn(b, s, heads, d, generator=g)
    k = torch.randn(b, s, groups, d, generator=g)
    v = torch.randn(b, s, groups, d, generator=g)
    prefix = torch.tensor([0, 1, 7, s])
    split = attention.prefix_lm_two_call_attention(q, k, v, prefix,
                                                   attention.varlen_attention_reference, d ** -0.5)
    mask = attention.prefix_lm_dense_mask(prefix, s)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=~mask,
        scale=d ** -0.5, enable_gqa=heads != groups).transpose(1, 2)
    torch.testing.assert_close(split, dense, atol=1e-6, rtol=1e-5)


def test_auto_backend_is_sdpa_on_cpu_and_flash_refused_without_cuda():
    assert attention.choose_core_attention("auto") is attention.SDPAttention
    assert attention.choose_core_attention("local") is None
    with pytest.raises(RuntimeError, match="flash-attn"):
        attention.choose_core_attention("flash")


def test_cpu_compat_refuses_to_switch_on_when_cuda_is_present(monkeypatch):
    monkeypatch.setattr(cpu_compat, "_ACTIVE", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = torch.cuda.current_device
    with pytest.raises(RuntimeError, match="refuses to switch on"):
        cpu_compat.enable()
    assert torch.cuda.current_device is before and cpu_compat._ACTIVE is None
