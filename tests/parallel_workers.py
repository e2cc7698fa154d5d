"""Bodies of the multi-process parallelism tests (imported by spawned processes)."""

from __future__ import annotations

import torch
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_rrtf.config import load_config
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.parallel.init import process_groups

VOCAB = 256
SEQ = 32


def _config(family: str, tp: int, pp: int, layers: int, groups: int):
    return load_config("configs/tiny.yaml", [
        f"model.family={family}", f"model.num_layers={layers}", "model.hidden_size=64",
        f"model.num_query_groups={groups}", f"model.seq_length={SEQ}",
        "model.make_vocab_size_divisible_by=128",
        f"parallel.tensor_parallel={tp}", f"parallel.pipeline_parallel={pp}",
    ])


def _batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (n, SEQ + 1), generator=g)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def _tp_shard(name: str, full: torch.Tensor, param: torch.Tensor, glu: bool) -> torch.Tensor:
    """Slice a TP=1 tensor to this rank's TP shard, following megatron's partition attributes."""
    if not getattr(param, "tensor_model_parallel", False):
        return full
    tp, r = (parallel_state.get_tensor_model_parallel_world_size(),
             parallel_state.get_tensor_model_parallel_rank())
    dim = param.partition_dim
    if glu and "linear_fc1" in name:  # [gate; up]: each rank holds [gate_r; up_r]
        gate, up = full.chunk(2, dim=0)
        return torch.cat([gate.chunk(tp, dim=0)[r], up.chunk(tp, dim=0)[r]], dim=0)
    return full.chunk(tp, dim=dim)[r]


def _reference(cfg, tokens, labels):
    """TP=1/PP=1 model on every rank: weights, loss and grads to compare against."""
    with process_groups(cfg.parallel, seed=7):
        model = build_gpt_model(cfg, VOCAB)
        pos = torch.arange(SEQ)[None].expand(tokens.shape[0], -1)
        loss = model(tokens, pos, None, labels=labels).float().mean()
        loss.backward()
        weights = {k: p.detach().clone() for k, p in model.named_parameters()}
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        return loss.item(), weights, grads


def tensor_parallel_equivalence(family: str, groups: int) -> dict:
    tokens, labels = _batch(4)
    ref_loss, weights, grads = _reference(_config(family, 1, 1, 2, groups), tokens, labels)
    cfg = _config(family, 2, 1, 2, groups)
    with process_groups(cfg.parallel, seed=99):  # different seed: weights must come from the copy
        model = build_gpt_model(cfg, VOCAB)
        glu = family == "rope"
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(_tp_shard(name, weights[name], p, glu))
        seen = {}
        core = model.decoder.layers[0].self_attention.core_attention
        core.register_forward_pre_hook(
            lambda mod, args: seen.update(q=tuple(args[0].shape), k=tuple(args[1].shape)))
        pos = torch.arange(SEQ)[None].expand(4, -1)
        loss = model(tokens, pos, None, labels=labels).float().mean()
        loss.backward()
        grad_diff = max((p.grad - _tp_shard(n, grads[n], p, glu)).abs().max().item()
                        for n, p in model.named_parameters())
        shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        return dict(ref_loss=ref_loss, loss=loss.item(), grad_diff=grad_diff, shapes=shapes,
                    query_shape=seen["q"], key_shape=seen["k"])


def pipeline_parallel_equivalence(family: str, microbatches: int) -> dict:
    layers = 4
    tokens, labels = _batch(2 * microbatches, seed=1)
    cfg1 = _config(family, 1, 1, layers, 1)
    with process_groups(cfg1.parallel, seed=7):
        ref = build_gpt_model(cfg1, VOCAB)
        weights = {k: p.detach().clone() for k, p in ref.named_parameters()}
        ref_losses, ref_grads = _run_schedule(ref, tokens, labels, microbatches)

    cfg = _config(family, 1, 2, layers, 1)
    with process_groups(cfg.parallel, seed=99):
        first = parallel_state.is_pipeline_first_stage()
        last = parallel_state.is_pipeline_last_stage()
        model = build_gpt_model(cfg, VOCAB, pre_process=first, post_process=last)
        offset = parallel_state.get_pipeline_model_parallel_rank() * layers // 2

        def global_name(n: str) -> str:
            if n.startswith("decoder.layers."):
                i = int(n.split(".")[2])
                return n.replace(f"decoder.layers.{i}.", f"decoder.layers.{i + offset}.", 1)
            return n

        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(weights[global_name(n)])
        losses, grads = _run_schedule(model, tokens, labels, microbatches)
        grad_diff = max((grads[n] - ref_grads[global_name(n)]).abs().max().item() for n in grads)
        loss_diff = max(abs(a - b) for a, b in zip(losses, ref_losses)) if last else 0.0
        return dict(loss_diff=loss_diff, grad_diff=grad_diff, n_losses=len(losses),
                    stage_params=sorted(grads))


def _run_schedule(model, tokens, labels, microbatches):
    mbs = tokens.shape[0] // microbatches
    batches = iter([(tokens[i * mbs:(i + 1) * mbs], labels[i * mbs:(i + 1) * mbs])
                    for i in range(microbatches)])

    def forward_step(data_iterator, model):
        tok, lab = next(data_iterator)
        pos = torch.arange(SEQ)[None].expand(tok.shape[0], -1)
        out = model(tok, pos, None, labels=lab)

        def loss_func(output):
            loss = output.float().mean()
            return loss, {"loss": loss.detach()}

        return out, loss_func

    model.config.finalize_model_grads_func = None
    results = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=batches, model=[model],
        num_microbatches=microbatches, seq_length=SEQ, micro_batch_size=mbs, forward_only=False)
    losses = [r["loss"].item() for r in results]
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return losses, grads


def loss_falls_on_repeated_batch(steps: int) -> list[float]:
    cfg = _config("starcoder", 1, 1, 2, 1)
    with process_groups(cfg.parallel, seed=3):
        model = build_gpt_model(cfg, VOCAB)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        tokens, labels = _batch(4, seed=5)
        pos = torch.arange(SEQ)[None].expand(4, -1)
        losses = []
        for _ in range(steps):
            loss = model(tokens, pos, None, labels=labels).float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses


def document_packing_under_model_parallel(family: str, groups: int, tp: int, pp: int) -> list:
    """Per-document |packed - alone| logit differences (test_document_packing) in a TP=2 or PP=2
    world: TP ranks compare their vocab shards; with PP the last stage compares the logits that
    megatron's schedule returns (forward only)."""
    from test_document_packing import PREFIXES, per_document_max_diff

    cfg = _config(family, tp, pp, 4, groups)
    with process_groups(cfg.parallel, seed=11):
        first = parallel_state.is_pipeline_first_stage()
        last = parallel_state.is_pipeline_last_stage()
        model = build_gpt_model(cfg, VOCAB, pre_process=first, post_process=last).eval()
        model.config.finalize_model_grads_func = None

        def forward(tokens, layout):
            if pp == 1:
                with torch.no_grad():
                    return model(tokens, layout.position_ids, layout.model_mask())

            def step(data_iterator, chunk):
                tok, lay = next(data_iterator)
                out = chunk(tok, lay.position_ids, lay.model_mask())

                def keep(output, non_loss_data=False):
                    return output

                return out, keep

            outs = get_forward_backward_func()(
                forward_step_func=step, data_iterator=iter([(tokens, layout)]), model=[model],
                num_microbatches=1, seq_length=tokens.shape[1], micro_batch_size=1,
                forward_only=True, collect_non_loss_data=True)
            return outs[0] if last else torch.zeros(*tokens.shape, 1)

        return [per_document_max_diff(forward, prefixes) for prefixes in ((0, 0, 0), PREFIXES)]
