"""The training engine against plain PyTorch: one megatron step (DDP + megatron Adam + scheduler +
clipping, per-token loss over micro-batches) equals torch AdamW on the same model and batch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from megatron_rrtf.config import load_config
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.model.documents import DocumentAttention
from megatron_rrtf.training.loop import LoopSpec, Trainer
from megatron_rrtf.training.setup import build_model_state
from pretrain.forward import STAT_NAMES, make_forward_step

pytestmark = pytest.mark.xdist_group("engine")
SEQ, VOCAB = 16, 128


class FixedBatches:
    """The same micro-batches every step (a BatchSource)."""

    def __init__(self, batches):
        self.batches = batches

    def next_microbatches(self, count):
        assert count == len(self.batches)
        return self.batches

    def counters(self, batches):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _batches(n_micro: int, micro: int):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n_micro):
        tokens = torch.randint(0, VOCAB, (micro, SEQ + 1), generator=g)
        mask = (torch.rand(micro, SEQ, generator=g) > 0.3).float()   # uneven token counts
        one_document = np.zeros((micro, SEQ), dtype=np.int32)
        out.append(dict(tokens=tokens[:, :-1], labels=tokens[:, 1:], loss_mask=mask,
                        attention=DocumentAttention.build(one_document,
                                                          np.zeros((micro, SEQ), dtype=bool)),
                        objective_id=torch.zeros(micro, dtype=torch.long)))
    return out


def test_one_megatron_step_equals_torch_adamw(tmp_path, world_of_one):
    cfg = load_config("configs/tiny.yaml", [
        "model.hidden_size=64", f"model.seq_length={SEQ}", "train.micro_batch_size=2",
        "train.global_batch_size=6", "train.warmup_steps=4", "train.lr=1e-2",
        "train.weight_decay=0.1", "train.clip_grad=0.5", f"logging.run_dir={tmp_path}",
        # Adam's first step is ~sign(grad): with eps 1e-8 a 1e-7 difference in a near-zero
        # gradient flips an update of size lr. A larger eps keeps the comparison meaningful.
        "train.adam_eps=1e-4",
        "logging.wandb_mode=disabled", "logging.progress_bar=false"])
    state = build_model_state(cfg, VOCAB)
    reference = build_gpt_model(cfg, VOCAB)  # megatron modules hold process groups: no deepcopy
    reference.load_state_dict(copy.deepcopy(state.model[0].module.state_dict()))
    batches = _batches(3, 2)
    spec = LoopSpec(source=FixedBatches(batches), forward_step=make_forward_step(False),
                    stat_names=STAT_NAMES, tokens_per_sample=SEQ)
    record = Trainer(cfg, state, spec).train_step()

    # Plain PyTorch: decay on matrices only, lr after one warm-up step, global clipping.
    decay = [p for p in reference.parameters() if p.dim() > 1]
    no_decay = [p for p in reference.parameters() if p.dim() == 1]
    lr = cfg.train.lr * 1 / cfg.train.warmup_steps
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                            betas=(cfg.train.adam_beta1, cfg.train.adam_beta2),
                            eps=cfg.train.adam_eps)
    total_tokens = sum(b["loss_mask"].sum() for b in batches)
    loss_sum = 0.0
    for b in batches:
        pos = torch.arange(SEQ)[None].expand(2, -1)
        per_token = reference(b["tokens"], pos, None, labels=b["labels"]).float()
        loss = (per_token * b["loss_mask"]).sum() / total_tokens
        loss.backward()
        loss_sum += loss.item()
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), cfg.train.clip_grad)
    for p, q in zip(state.model[0].module.parameters(), reference.parameters()):
        # both clipped in place by their optimizers' clipping (megatron's inside step())
        torch.testing.assert_close(p.main_grad, q.grad, atol=1e-7, rtol=1e-5)
    opt.step()

    assert abs(record["loss"] - loss_sum) < 1e-6
    assert abs(record["grad_norm"] - norm.item()) < 1e-5
    for (name, p), q in zip(state.model[0].module.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=2e-6, rtol=1e-5, msg=name)
