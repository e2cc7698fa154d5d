"""Bodies of the multi-process RRTF tests (imported by spawned processes)."""

from __future__ import annotations

import torch
from parallel_workers import VOCAB, _config, _tp_shard

from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.parallel.init import process_groups
from megatron_rrtf.rrtf.packing import CandidateGroup, pack_candidates


def packed_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    groups = []
    for p_len, r_lens in ((5, (3, 7, 2)), (4, (6, 1))):
        prompt = torch.randint(3, VOCAB, (p_len,), generator=g).tolist()
        responses = [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in r_lens]
        groups.append(CandidateGroup(prompt, responses))
    c = pack_candidates(groups, max_len=32)
    return dict(tokens=c.tokens, position_ids=c.position_ids, attention_mask=c.attention_mask,
                pred_row=c.pred_row, pred_col=c.pred_col, target=c.target,
                candidate=c.candidate, lengths=c.lengths)


def candidate_logprobs_tensor_parallel(family: str) -> dict:
    """Per-candidate summed log-probs: TP=1 vs TP=2 (same weights) and vs plain log_softmax."""
    from align.train import candidate_logprobs_tp
    from megatron_rrtf.rrtf.packing import CandidateBatch, candidate_logprobs

    batch = packed_batch()
    with process_groups(_config(family, 1, 1, 2, 1).parallel, seed=7):
        ref = build_gpt_model(_config(family, 1, 1, 2, 1), VOCAB).eval()
        weights = {k: p.detach().clone() for k, p in ref.named_parameters()}
        logits = ref(batch["tokens"], batch["position_ids"], batch["attention_mask"])
        tp1 = candidate_logprobs_tp(logits, batch)
    fields = {k: batch[k] for k in ("tokens", "position_ids", "attention_mask", "pred_row",
                                    "pred_col", "target", "candidate", "lengths")}
    plain, _ = candidate_logprobs(logits, CandidateBatch(**fields, group_of=torch.zeros(5),
                                                         index_in_group=torch.zeros(5)))
    cfg = _config(family, 2, 1, 2, 1)
    with process_groups(cfg.parallel, seed=99):
        model = build_gpt_model(cfg, VOCAB).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(_tp_shard(name, weights[name], p, family == "rope"))
        tp2 = candidate_logprobs_tp(model(batch["tokens"], batch["position_ids"],
                                          batch["attention_mask"]), batch)
    return dict(tp1=tp1.tolist(), tp2=tp2.tolist(), plain=plain.tolist(),
                local_vocab=int(model.output_layer.weight.shape[0]))
