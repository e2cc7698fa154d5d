"""`mrrtf rrtf run` trains a round as a torchrun job when the config asks for several processes:
one round with TP=2 on CPU (gloo) completes, and its first step's loss equals a TP=1 run's on the
same ranked set."""

from __future__ import annotations

import pytest
import yaml

from megatron_rrtf.errors import ConfigError

TOL = 1e-5  # as the parallel-equivalence tests: TP changes only the order of summation


@pytest.mark.slow
@pytest.mark.xdist_group("align")
def test_round_with_tensor_parallel_2_runs_under_torchrun_with_the_tp1_first_loss(
        tiny_data_config, tmp_path):
    from pretrain_runs import read_metrics

    from align.rounds import round_config, run_rounds
    from align.train import run_rrtf_train
    from megatron_rrtf.config import load_config
    from tests.test_align_train import _ranked_set

    ranked0 = _ranked_set(tmp_path)  # train.jsonl, teacher.jsonl, ranked.jsonl of 12 problems

    def config(run, *extra):
        return load_config(["configs/rrtf/tiny_demo.yaml"], [
            f"data.tokenizer={tiny_data_config.data.tokenizer}", "model.hidden_size=64",
            "model.seq_length=256", "model.hidden_dropout=0.0", "model.attention_dropout=0.0",
            "train.micro_batch_size=2", "train.global_batch_size=4", "train.warmup_steps=1",
            "train.train_steps=1", f"logging.run_dir={tmp_path / run}",
            "logging.wandb_mode=disabled", "logging.progress_bar=false",
            "rrtf.student={samples: 0}", "rrtf.rounds=1",
            f"rrtf.teachers=[{{name: demo, kind: jsonl, path: '{tmp_path / 'teacher.jsonl'}', "
            "samples: 2}]", *extra])

    run_rrtf_train(config("init"), ranked0)                      # the model to align
    init = f"checkpoint.init_from={tmp_path / 'init'}"
    summary = run_rounds(config("tp2", init, "parallel.tensor_parallel=2"),
                         tmp_path / "train.jsonl")
    rd = tmp_path / "tp2" / "round_1"
    assert summary["rounds"][0]["train"]["status"] == "completed"
    assert (rd / "train.log").is_file() and (rd / "checkpoints" / "latest").is_file()
    assert yaml.safe_load((rd / "config.yaml").read_text())["parallel"]["tensor_parallel"] == 2
    tp1 = round_config(config("tp1", init), 1, tmp_path / "init")
    run_rrtf_train(tp1, rd / "ranked.jsonl")
    first_tp2 = read_metrics(rd)[0]
    first_tp1 = read_metrics(tmp_path / "tp1" / "round_1")[0]
    assert first_tp2["step"] == first_tp1["step"] == 1
    for key in ("loss", "loss/rank", "loss/sft", "grad_norm"):   # forward and backward
        assert first_tp2[key] == pytest.approx(first_tp1[key], rel=TOL, abs=TOL), key


def test_rrtf_run_refuses_to_start_under_torchrun(monkeypatch, tmp_path):
    from align.rounds import run_rounds
    from megatron_rrtf.config import load_config

    monkeypatch.setenv("WORLD_SIZE", "2")
    config = load_config(["configs/rrtf/tiny_demo.yaml"], [
        f"rrtf.problems={tmp_path / 'p.jsonl'}", f"checkpoint.init_from={tmp_path}"])
    with pytest.raises(ConfigError, match="not under torchrun"):
        run_rounds(config)
