"""The RRTF demo raises held-out pass@1, seed after seed (a scaled-down `mrrtf rrtf demo`).

The real pipeline end to end: a briefly pretrained tiny megatron model, the generated demo
problems and their mixed teacher file, student sampling through the HF export, sandbox ranking,
megatron RRTF training (ranking loss + SFT), export again, greedy held-out answers run in the
sandbox. Scaled down from the demo (smaller tokenizer, fewer problems and steps) to fit the
suite; the full-size figures are in docs/rrtf.md.
"""

from __future__ import annotations

import pytest

from tests.pretrain_runs import pretrain_config

SEEDS = (1, 2)
MARGIN = 0.3
"""Held-out pass@1 must rise by at least this much for every seed. Measured 2026-11-30 (2-core
CPU, one torch thread): 0.0 -> 0.55 (seed 1) and 0.0 -> 0.65 (seed 2) at 800 steps; 400 steps
gave only 0.075 and 0.025: in between, the model goes from the right format with wrong
constants to reading the constants from the instruction."""


@pytest.mark.slow
@pytest.mark.xdist_group("rrtf_demo")
@pytest.mark.usefixtures("one_torch_thread")  # leaves the other core to the other test worker
def test_rrtf_demo_raises_heldout_pass_at_1_on_every_seed(tiny_data_config, tmp_path):
    from align.demo import DemoData, run_rrtf_demo
    from pretrain.run import run_pretrain

    pretrained = tmp_path / "pretrain"
    run_pretrain(pretrain_config(tiny_data_config, pretrained, "train.train_steps=20",
                                 "model.seq_length=256", "model.hidden_size=128"))
    results = [run_rrtf_demo(pretrained, tmp_path / "rrtf", seed, DemoData(train=200, heldout=40),
                             overrides=["train.train_steps=800", "rrtf.student.samples=1",
                                        "logging.progress_bar=false"],
                             sft_baseline=False, benchmarks=None)
               for seed in SEEDS]
    key = "heldout/pass@1 (greedy)"
    rises = {r["seed"]: (r["metrics"]["before"][key], r["metrics"]["after RRTF"][key])
             for r in results}
    print("held-out pass@1 (before, after RRTF) by seed:", rises)
    assert all(after - before >= MARGIN for before, after in rises.values()), rises
