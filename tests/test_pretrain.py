"""Pretraining stage: exact resume, resharding, crash safety, signals, NaN handling, metrics."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from distributed import run_distributed
from pretrain_runs import pretrain_config, read_metrics, run_in_process, sources_json

from megatron_rrtf.checkpoint.manager import resolve_step_dir
from megatron_rrtf.objectives.mixture import OBJECTIVE_NAMES
from megatron_rrtf.training.launch import training_run
from megatron_rrtf.training.loop import NonFiniteLossError, Trainer
from megatron_rrtf.training.setup import build_model_state
from pretrain.run import build_pretrain_spec, run_pretrain

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pretrain")]
REPO = Path(__file__).resolve().parents[1]


def _resume_copy(src_run: Path, step: int, dst_run: Path) -> None:
    """A run directory holding only `src_run`'s checkpoint at `step`, as if stopped there."""
    name = f"step_{step:08d}"
    (dst_run / "checkpoints").mkdir(parents=True)
    shutil.copytree(src_run / "checkpoints" / name, dst_run / "checkpoints" / name)
    (dst_run / "checkpoints" / "latest").write_text(name + "\n")


def _epochs_per_step(config, steps: int) -> list[set[int]]:
    """Which data epochs each step's samples come from (to place an epoch boundary)."""
    from megatron_rrtf.data.stream import build_train_stream
    from megatron_rrtf.tokenizer.loader import load_tokenizer

    gb = config.train.global_batch_size
    stream = build_train_stream(config, load_tokenizer(config.data.tokenizer), 0, 1, steps * gb)
    return [set(stream.next_batch(gb)["epoch"].tolist()) for _ in range(steps)]


@pytest.mark.parametrize("documents", ["separate", "packed"])
def test_resume_mid_run_and_across_an_epoch_is_bit_exact(tiny_data_config, tmp_path, documents):
    # seq 256 and equal weights: the prose source (~7.4k tokens) runs out of its first epoch
    # around step 7, inside the resumed part. Every objective, so that prefix-LM prefixes and
    # span blocks meet document boundaries, with documents kept apart or not.
    longer = ("model.seq_length=256", "train.global_batch_size=8", "train.micro_batch_size=4",
              f"data.document_attention={documents}",
              "objectives.rates={causal: 0.25, span: 0.25, fim: 0.25, prefix_lm: 0.25}")
    weights = {"py": 1.0, "prose": 1.0}
    straight = pretrain_config(tiny_data_config, tmp_path / "a", "checkpoint.save_interval=4",
                               "checkpoint.keep_last=5", *longer, weights=weights)
    epochs = _epochs_per_step(straight, 12)
    assert max(epochs[11]) > max(epochs[4]), "the resumed part must cross a data epoch"
    run_pretrain(straight)
    assert not dist.is_initialized()  # the run's process groups are torn down after it
    _resume_copy(tmp_path / "a", 4, tmp_path / "b")
    resumed = pretrain_config(tiny_data_config, tmp_path / "b", *longer, weights=weights)
    summary = run_pretrain(resumed)
    assert summary["steps_this_run"] == 8
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["loss"] for r in a[4:]] == [r["loss"] for r in b]
    assert [r["grad_norm"] for r in a[4:]] == [r["grad_norm"] for r in b]
    for key in [f"loss/{n}" for n in OBJECTIVE_NAMES]:
        assert [r[key] for r in a[4:]] == [r[key] for r in b]


def test_metrics_jsonl_has_every_key_for_every_step(tiny_data_config, tmp_path):
    cfg = pretrain_config(tiny_data_config, tmp_path, "train.train_steps=4",
                          "train.eval_interval=2", "objectives.rates={causal: 0.25, span: 0.25, "
                          "fim: 0.25, prefix_lm: 0.25}", "train.global_batch_size=8")
    run_pretrain(cfg)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    keys = {"loss", "lr", "grad_norm", "tokens_per_s", "tflops", "mfu", "consumed_tokens",
            "consumed_tokens/py", "consumed_tokens/prose",
            *[f"loss/{n}" for n in OBJECTIVE_NAMES]}
    for r in records:
        assert keys <= set(r)
        assert math.isfinite(r["loss"]) and r["tokens_per_s"] > 0
    assert any(r["loss/prefix_lm"] is not None for r in records)
    assert records[-1]["consumed_tokens"] == 4 * 8 * cfg.model.seq_length
    assert records[-1]["consumed_tokens/py"] + records[-1]["consumed_tokens/prose"] == \
        records[-1]["consumed_tokens"]
    evals = read_metrics(tmp_path, "eval")
    assert [e["step"] for e in evals] == [2, 4]
    assert {"eval/nl/loss", "eval/code/python/loss"} <= set(evals[0])


def test_nonfinite_loss_skips_the_step_then_stops_the_run(tiny_data_config, tmp_path):
    cfg = pretrain_config(tiny_data_config, tmp_path, "train.max_nonfinite_steps=3",
                          "checkpoint.load=null")
    with training_run(cfg) as tokenizer:
        spec = build_pretrain_spec(cfg, tokenizer)
        state = build_model_state(cfg, cfg.model.padded_vocab_size(tokenizer.vocab_size))
        real_forward, poisoned = spec.forward_step, {2, 4, 5, 6}
        trainer = Trainer(cfg, state, spec)

        def forward(batch, model):
            output, loss_func = real_forward(batch, model)
            if trainer.step + 1 in poisoned:
                output = output * float("nan")
            return output, loss_func

        spec.forward_step = forward
        params = lambda: [p.detach().clone() for p in state.model[0].parameters()]  # noqa: E731
        records = [trainer.train_step()]
        before = params()
        records.append(trainer.train_step())                       # step 2: NaN -> skipped
        assert records[-1]["skipped"] and not records[0]["skipped"]
        assert all((a == b).all() for a, b in zip(before, params()))
        records.append(trainer.train_step())                       # step 3 trains again
        assert not records[-1]["skipped"] and trainer.nonfinite_in_a_row == 0
        trainer.train_step()
        trainer.train_step()
        with pytest.raises(NonFiniteLossError, match="train.max_nonfinite_steps=3"):
            trainer.train_step()


def test_tensor_parallel_2_checkpoint_resumes_with_tensor_parallel_1(tiny_data_config, tmp_path):
    tp2 = pretrain_config(tiny_data_config, tmp_path / "tp2", "parallel.tensor_parallel=2",
                          "train.train_steps=4", "checkpoint.save_interval=3",
                          "checkpoint.keep_last=5")
    run_distributed(run_in_process, 2, tp2)
    _resume_copy(tmp_path / "tp2", 3, tmp_path / "tp1")
    run_pretrain(pretrain_config(tiny_data_config, tmp_path / "tp1", "train.train_steps=4"))
    (next_tp2,) = read_metrics(tmp_path / "tp2")[3:]
    (next_tp1,) = read_metrics(tmp_path / "tp1")
    assert abs(next_tp1["loss"] - next_tp2["loss"]) < 1e-5
    assert abs(next_tp1["grad_norm"] - next_tp2["grad_norm"]) < 1e-4


def test_pipeline_parallel_2_checkpoint_resumes_with_pipeline_parallel_1(tiny_data_config,
                                                                          tmp_path):
    pp2 = pretrain_config(tiny_data_config, tmp_path / "pp2", "parallel.pipeline_parallel=2",
                          "train.train_steps=3", "checkpoint.save_interval=2",
                          "checkpoint.keep_last=5")
    run_distributed(run_in_process, 2, pp2)
    _resume_copy(tmp_path / "pp2", 2, tmp_path / "pp1")
    run_pretrain(pretrain_config(tiny_data_config, tmp_path / "pp1", "train.train_steps=3"))
    assert abs(read_metrics(tmp_path / "pp1")[0]["loss"] -
               read_metrics(tmp_path / "pp2")[2]["loss"]) < 1e-5


def _cli(config_overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "mrrtf", "pretrain", "configs/tiny.yaml",
            "configs/objectives/codegen2_mix.yaml", *config_overrides]


def _overrides(cfg, run_dir: Path, *extra: str) -> list[str]:
    d = cfg.data
    sources = sources_json(cfg)
    return [f"data.tokenizer={d.tokenizer}", f"data.output_dir={d.output_dir}",
            f"data.sources={sources}", f"model.seq_length={cfg.model.seq_length}",
            "model.hidden_size=64", "train.micro_batch_size=2", "train.global_batch_size=4",
            "logging.wandb_mode=disabled", "logging.progress_bar=false",
            f"logging.run_dir={run_dir}", *extra]


def _popen(args: list[str]) -> subprocess.Popen:
    """The CLI in its own process group, so a test can clean up every child it leaves."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Reap what a killed run leaves behind (dist_checkpointing's writer processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_sigterm_saves_a_checkpoint_before_exiting(tiny_data_config, tmp_path):
    run = tmp_path / "run"
    proc = _popen(_cli(_overrides(tiny_data_config, run, "train.train_steps=100000")))
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    _kill_group(proc)
    assert proc.returncode == 3, out
    step_dir = resolve_step_dir(run)
    last = read_metrics(run)[-1]["step"]
    assert step_dir.name == f"step_{last:08d}"
    assert '"status": "interrupted"' in out


def test_kill_9_during_a_save_leaves_the_last_checkpoint_loadable(tiny_data_config, tmp_path):
    run = tmp_path / "run"
    args = _cli(_overrides(tiny_data_config, run, "train.train_steps=100000",
                           "checkpoint.save_interval=1", "checkpoint.keep_last=2",
                           "model.hidden_size=256", "model.num_layers=4"))
    proc = _popen(args)
    ckpts = run / "checkpoints"
    deadline = time.time() + 180
    killed_mid_save = False
    while time.time() < deadline and proc.poll() is None:
        partial = list(ckpts.glob(".tmp_step_*")) if ckpts.is_dir() else []
        if partial and (ckpts / "latest").is_file():
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_save = True
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    _kill_group(proc)
    assert killed_mid_save, "never caught a save in progress"
    good = resolve_step_dir(run)
    assert (good / "meta.json").is_file()
    step = int(good.name.split("_")[1])
    # Resume from it: the partial save is cleaned up and training continues from `step`.
    resume = _popen(_cli(_overrides(tiny_data_config, run, f"train.train_steps={step + 1}",
                                    "model.hidden_size=256", "model.num_layers=4")))
    out, _ = resume.communicate(timeout=180)
    _kill_group(resume)
    assert resume.returncode == 0, out
    assert not list(ckpts.glob(".tmp_step_*"))
    assert read_metrics(run)[-1]["step"] == step + 1


def test_loss_falls_below_the_unigram_entropy_of_the_data(tiny_data_config, tmp_path):
    """A model that ignored context could at best reach the unigram entropy of the tokens;
    getting below it shows the model uses context."""
    from megatron_rrtf.data.stream import build_train_stream
    from megatron_rrtf.tokenizer.loader import load_tokenizer

    cfg = pretrain_config(tiny_data_config, tmp_path, "train.train_steps=60",
                          "objectives.rates={causal: 1.0}", "train.lr=3e-3",
                          "train.global_batch_size=8", "train.micro_batch_size=8")
    stream = build_train_stream(cfg, load_tokenizer(cfg.data.tokenizer), 0, 1, 480)
    tokens = np.concatenate([stream.next_batch(8)["tokens"][:, 1:].ravel() for _ in range(60)])
    p = np.bincount(tokens) / len(tokens)
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    run_pretrain(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path)]
    assert np.mean(losses[-5:]) < unigram < losses[0], (losses[0], unigram, losses[-5:])


def test_plot_writes_loss_curves_of_several_runs(tmp_path):
    import json

    from mrrtf.cli import main

    for name, offset in (("causal", 0.0), ("mix", 0.3)):
        run = tmp_path / name
        run.mkdir()
        lines = [dict(kind="train", step=s, loss=5 - s / 10 + offset, consumed_tokens=s * 100,
                      **{"loss/causal": 5 - s / 10, "loss/span": None}) for s in range(1, 6)]
        lines.append({"kind": "eval", "step": 5, "eval/nl/loss": 4.0 + offset})
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["plot", str(tmp_path / "causal"), str(tmp_path / "mix"),
                 "--out", str(tmp_path / "plots")]) == 0
    for png in ("train_loss.png", "eval_loss.png"):
        data = (tmp_path / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert main(["plot", str(tmp_path / "missing")]) == 2


def test_init_from_loads_weights_only_into_a_fresh_run(tiny_data_config, tmp_path):
    import torch

    from megatron_rrtf.checkpoint.model_io import load_model

    run_pretrain(pretrain_config(tiny_data_config, tmp_path / "a", "train.train_steps=2"))
    cfg = pretrain_config(tiny_data_config, tmp_path / "b", "train.train_steps=2",
                          f"checkpoint.init_from={tmp_path / 'a'}")
    with training_run(cfg) as tokenizer:
        vocab = cfg.model.padded_vocab_size(tokenizer.vocab_size)
        trainer = Trainer(cfg, build_model_state(cfg, vocab), build_pretrain_spec(cfg, tokenizer))
        trainer.maybe_resume()
        assert trainer.step == 0 and trainer.spec.source.state_dict()["consumed_samples"] == 0
        reference = build_model_state(cfg, vocab)
        load_model(reference.model, resolve_step_dir(tmp_path / "a"))
        for p, q in zip(trainer.state.model[0].parameters(), reference.model[0].parameters()):
            assert torch.equal(p, q)


def test_data_parallel_2_matches_one_process_with_the_same_global_batch(tiny_data_config,
                                                                         tmp_path):
    """DP=2 x micro 2 and DP=1 x micro 2 x accumulation 2 see the same 4 samples per step and
    must take the same steps (the loss is summed over the global batch / its tokens)."""
    common = ("train.train_steps=3", "train.micro_batch_size=2", "train.global_batch_size=4")
    run_distributed(run_in_process, 2, pretrain_config(tiny_data_config, tmp_path / "dp2",
                                                       *common))
    run_pretrain(pretrain_config(tiny_data_config, tmp_path / "dp1", *common))
    dp2, dp1 = read_metrics(tmp_path / "dp2"), read_metrics(tmp_path / "dp1")
    for a, b in zip(dp2, dp1):
        assert abs(a["loss"] - b["loss"]) < 1e-5
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-5
        assert a["consumed_tokens"] == b["consumed_tokens"]
