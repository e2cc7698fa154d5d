"""RRTF training on megatron-core: TP-exact log-probs, response-only loss, exact resume."""

from __future__ import annotations

import json
import shutil

import align_workers
import pytest
import torch
from distributed import run_distributed

from align.train import candidate_logprobs_tp, rrtf_loss_func

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("align")]


def test_tensor_parallel_2_candidate_logprobs_equal_tensor_parallel_1():
    results = run_distributed(align_workers.candidate_logprobs_tensor_parallel, 2, "starcoder")
    for r in results:
        assert r["local_vocab"] == 128  # the output layer really is split over the vocabulary
        assert len(r["tp1"]) == 5
        for a, b, c in zip(r["tp1"], r["tp2"], r["plain"]):
            assert abs(a - b) < 1e-5 and abs(a - c) < 1e-5


def _loss_inputs(batch, scores, teacher):
    k = int(batch["lengths"].numel())
    group_of = torch.tensor([0, 0, 0, 1, 1])
    index_in = torch.tensor([0, 1, 2, 0, 1])
    return dict(batch, group_of=group_of, index_in_group=index_in,
                scores=torch.tensor(scores), is_teacher=torch.tensor(teacher),
                valid=torch.tensor([[True, True, True], [True, True, False]]),
                candidate=batch["candidate"], lengths=batch["lengths"]), k


def test_only_response_tokens_carry_loss(tiny_data_config, world_of_one):
    from megatron_rrtf.config import load_config

    cfg = load_config("configs/tiny.yaml", ["rrtf.loss=rrtf"])
    batch = align_workers.packed_batch()
    inputs, _ = _loss_inputs(batch, [[3.0, 1.0, 2.5], [0.0, 2.0, 0.0]],
                             [[True, False, False], [False, True, False]])
    rows, cols = batch["tokens"].shape
    logits = torch.randn(rows, cols, 256, requires_grad=True)
    loss, prompts, stats = rrtf_loss_func(inputs, cfg, logits)
    loss.backward()
    touched = logits.grad.abs().sum(-1) > 0                                  # [R, S]
    expected = torch.zeros(rows, cols, dtype=torch.bool)
    expected[batch["pred_row"], batch["pred_col"]] = True
    # No gradient outside the positions that predict response tokens (the hinge may leave
    # some of those at zero); the SFT target (group 0's teacher, row 0 cols 4-6) always has one.
    assert not (touched & ~expected).any()
    assert touched[0, 4:7].all()
    assert int(prompts) == 2 and stats["loss/rank"][0] > 0 and stats["loss/sft"][0] > 0
    # Exactly the predicting positions of response tokens: the prompt's other positions and
    # the last response token (it predicts nothing) carry no gradient.
    assert int(expected.sum()) < int((batch["position_ids"] >= 0).sum())


def test_candidate_logprobs_match_log_softmax_on_one_process(world_of_one):
    batch = align_workers.packed_batch()
    logits = torch.randn(*batch["tokens"].shape, 256)
    ours = candidate_logprobs_tp(logits, batch)
    logp = logits.log_softmax(-1)[batch["pred_row"], batch["pred_col"]]
    picked = logp.gather(1, batch["target"][:, None])[:, 0]
    expected = torch.zeros(5).index_add(0, batch["candidate"], picked)
    torch.testing.assert_close(ours, expected)


def _ranked_set(tmp_path):
    from align.rank import rank_problems, read_responses, write_ranked
    from megatron_rrtf.config.rrtf import STOP_MARKERS
    from megatron_rrtf.rrtf.demo_problems import generate_demo_problems, teacher_records
    from megatron_rrtf.rrtf.problems import load_problems

    train, _ = generate_demo_problems(12, 2, seed=0)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(p.to_json()) + "\n" for p in train))
    teacher = teacher_records(train, 2, 0.6, seed=0)
    student = [dict(r, source="student") for r in teacher_records(train, 2, 0.3, seed=1)]
    for name, recs in (("teacher", teacher), ("student", student)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    problems, _ = load_problems(tmp_path / "train.jsonl")
    responses = read_responses([tmp_path / "teacher.jsonl", tmp_path / "student.jsonl"])
    write_ranked(tmp_path / "ranked.jsonl", rank_problems(problems, STOP_MARKERS, responses))
    return tmp_path / "ranked.jsonl"


def test_rrtf_training_resume_is_bit_exact(tiny_data_config, tmp_path):
    from pretrain_runs import read_metrics

    from align.train import run_rrtf_train
    from megatron_rrtf.config import load_config

    ranked = _ranked_set(tmp_path)

    def config(run, *extra):
        return load_config(["configs/rrtf/tiny_demo.yaml"], [
            f"data.tokenizer={tiny_data_config.data.tokenizer}", "model.hidden_size=64",
            "model.seq_length=256", "train.micro_batch_size=2", "train.global_batch_size=4",
            "train.train_steps=6", "train.warmup_steps=1", f"logging.run_dir={tmp_path / run}",
            "logging.wandb_mode=disabled", "logging.progress_bar=false", *extra])

    run_rrtf_train(config("a", "checkpoint.save_interval=3"), ranked)
    step = "step_00000003"
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / step, tmp_path / "b" / "checkpoints" / step)
    (tmp_path / "b" / "checkpoints" / "latest").write_text(step)
    run_rrtf_train(config("b"), ranked)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert len(b) == 3 and [r["loss"] for r in a[3:]] == [r["loss"] for r in b]
    assert any(r["loss/rank"] > 0 for r in a), "student/teacher pairs must reach the rank loss"


@pytest.mark.parametrize("family", ["starcoder", "rope"])
def test_packed_candidates_give_the_padded_log_probs_in_both_families(family, world_of_one):
    """Packing restarts position ids per response; the RoPE family follows them too
    (PositionedGPTModel), so both layouts give each candidate the same log-prob."""
    from parallel_workers import _config

    from megatron_rrtf.model.build import build_gpt_model
    from megatron_rrtf.rrtf.batch import RankedExample, build_rrtf_batch

    model = build_gpt_model(_config(family, 1, 1, 2, 1), 256).eval()
    examples = [RankedExample("def f(x):", ("return x + 1", "return 2 * x", "pass"),
                              (3.0, 1.0, 0.0), (True, False, False)),
                RankedExample("# add", ("a + b", "a - b if a else b"), (3.0, 2.0), (True, False))]

    def encode(text):
        return [ord(c) % 200 + 3 for c in text]

    logps = []
    for pack in (True, False):
        c = build_rrtf_batch(examples, encode, 1, pack=pack, max_len=32, pad_id=0).candidates
        with torch.no_grad():
            logits = model(c.tokens, c.position_ids, c.attention_mask)
        fields = dict(pred_row=c.pred_row, pred_col=c.pred_col, target=c.target,
                      candidate=c.candidate, lengths=c.lengths)
        logps.append(candidate_logprobs_tp(logits, fields))
    assert logps[0].shape == (5,)
    torch.testing.assert_close(logps[0], logps[1], atol=1e-5, rtol=1e-5)
