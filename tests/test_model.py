"""The megatron-core model: parameter counts, attention backends, prefix-LM masks, CPU compat."""

import numpy as np
import pytest
import torch

from megatron_rrtf.config import load_config
from megatron_rrtf.model import attention
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.model.documents import DocumentAttention
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
                                                 "parallel.pipeline_parallel=1",
                                                 "parallel.sequence_parallel=false"])
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


def _layout(prefix_lens, doc_ids=None, separate=True):
    """DocumentAttention for rows with these prefix lengths (one document per row by default)."""
    b = len(prefix_lens)
    ids = np.zeros((b, SEQ), dtype=np.int32) if doc_ids is None else np.asarray(doc_ids)
    prefix = np.arange(SEQ)[None] < np.asarray(prefix_lens)[:, None]
    return DocumentAttention.build(ids, prefix, separate)


def _run(model, tokens, layout):
    return model(tokens, layout.position_ids, layout.model_mask())


def test_prefix_lm_mask_is_bidirectional_over_prefix_and_causal_after():
    model = _model(seed=3)
    p = 10
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 128, (1, SEQ), generator=g)
    prefix = _layout([p])
    base = _run(model, tokens, prefix)
    # A token after the prefix never moves outputs at earlier positions (causal after p).
    for j in (p, p + 5, SEQ - 1):
        changed = tokens.clone()
        changed[0, j] = (changed[0, j] + 1) % 128
        out = _run(model, changed, prefix)
        torch.testing.assert_close(out[:, :j], base[:, :j], atol=0, rtol=0)
        assert not torch.allclose(out[:, j:], base[:, j:])
    # A token inside the prefix moves outputs at earlier positions (bidirectional prefix),
    # which the causal model never does.
    j = 7
    changed = tokens.clone()
    changed[0, j] = (changed[0, j] + 1) % 128
    assert not torch.allclose(_run(model, changed, prefix)[:, :j], base[:, :j])
    causal = _logits(model, tokens)
    torch.testing.assert_close(_logits(model, changed)[:, :j], causal[:, :j], atol=0, rtol=0)


def test_prefix_length_zero_and_one_masks_equal_causal():
    model = _model(seed=4)
    tokens = torch.randint(0, 128, (2, SEQ), generator=torch.Generator().manual_seed(3))
    causal = _logits(model, tokens)
    for p in (0, 1):
        layout = _layout([p, p])
        assert layout.model_mask() is None  # the kernels' causal fast path
        torch.testing.assert_close(_logits(model, tokens, layout.dense()), causal)


@pytest.mark.parametrize("family", ["starcoder", "rope"])
def test_our_attention_with_documents_equals_megatron_local_with_the_dense_mask(family):
    tokens = torch.randint(0, 128, (3, SEQ), generator=torch.Generator().manual_seed(4))
    ids = np.zeros((3, SEQ), dtype=np.int32)
    ids[1, 9:], ids[2, 5:], ids[2, 15:] = 1, 1, 2
    prefix = np.zeros((3, SEQ), dtype=bool)
    prefix[0, :SEQ], prefix[1, 9:13], prefix[2, :3] = True, True, True
    layout = DocumentAttention.build(ids, prefix)
    ours = _model(family, "sdpa", seed=6)(tokens, layout.position_ids, layout.model_mask())
    local = _model(family, "local", seed=6)(tokens, layout.position_ids, layout.dense())
    torch.testing.assert_close(ours, local, atol=1e-5, rtol=1e-5)


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
