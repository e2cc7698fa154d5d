"""The memory planner: its prediction against what a training step really holds, the presets'
layouts re-derived (so presets and planner cannot drift apart), and `mrrtf plan`."""

from __future__ import annotations

import re

import memory_probe
import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.planning.layouts import parse_bytes, plan
from megatron_rrtf.planning.memory import GiB, Layout, estimate
from mrrtf.cli import main

pytestmark = pytest.mark.xdist_group("plan")

PRESETS = ["1b", "3_7b", "7b", "16b", "starcoder_15b"]
NODE_GPUS, NODES, GPU_MEMORY = 8, 8, 80 * GiB
# the layout the planner is asked to choose, whatever the preset carries
UNLAID = ["parallel.tensor_parallel=1", "parallel.pipeline_parallel=1",
          "parallel.sequence_parallel=false", "parallel.use_distributed_optimizer=false",
          "parallel.virtual_pipeline=null"]


def _best(preset: str, gpus: int) -> Layout:
    cfg = load_config(f"configs/{preset}.yaml", UNLAID)
    fits, _ = plan(cfg, cfg.model.padded_vocab_size(cfg.model.vocab_size), gpus, GPU_MEMORY,
                   NODE_GPUS)
    return fits[0].layout


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_carry_the_planners_layout_for_one_node_and_for_eight(preset):
    one_node = load_config(f"configs/{preset}.yaml")
    assert Layout.of(one_node, NODE_GPUS) == _best(preset, NODE_GPUS)
    multi = load_config([f"configs/{preset}.yaml", f"configs/layouts/{preset}_64gpus.yaml"])
    assert Layout.of(multi, NODE_GPUS * NODES) == _best(preset, NODE_GPUS * NODES)


def test_predicted_memory_matches_a_measured_training_step_within_25_percent(tmp_path):
    """The cheapest case of benchmarks/bench_plan_memory.py: one process, fp32, 4 layers."""
    overrides = ["model.num_layers=4", "model.hidden_size=256", "model.num_attention_heads=4",
                 "train.micro_batch_size=4", "train.global_batch_size=8",
                 "train.precision=fp32"]
    measured = memory_probe.measure_step(str(tmp_path), ["configs/tiny.yaml"], overrides,
                                         seq=512, vocab=4000)
    cfg = load_config("configs/tiny.yaml", ["model.seq_length=512", *overrides])
    predicted = estimate(cfg.model, measured["padded_vocab"], Layout.of(cfg, 1), "fp32",
                         measured["microbatches"])
    assert predicted.parameters == measured["parameters"]
    assert predicted.optimizer == measured["optimizer"]      # Adam moments, fp32: 8 B/param
    assert abs(predicted.activations / measured["activations"] - 1) < 0.25
    total = sum(measured[k] for k in ("weights", "gradients", "optimizer", "activations"))
    assert abs(predicted.total / total - 1) < 0.25


def test_plan_16b_on_64_gpus_lists_layouts_that_fit_80gb_and_none_that_do_not(capsys):
    assert main(["plan", "configs/16b.yaml", "--gpus", "64", "--gpu-memory", "80GiB",
                 "--top", "200"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) > 5
    per_gpu = [float(row.split("|")[3]) for row in rows]
    assert max(per_gpu) <= 80 * 0.9                   # 10% kept free
    assert "TP2 x PP1 x DP32" in rows[0]              # the preset's multi-node layout
    assert "as overrides: parallel.tensor_parallel=2" in out


def test_what_does_not_fit_is_said_and_the_run_fails(capsys):
    assert main(["plan", "configs/16b.yaml", "--gpus", "1", "--gpu-memory", "80GiB"]) == 1
    assert "no layout fits; the smallest needs" in capsys.readouterr().out


def test_tensor_parallel_across_nodes_is_flagged(capsys):
    assert main(["plan", "configs/starcoder_15b.yaml", "--gpus", "8", "--gpus-per-node", "2",
                 "--top", "200"]) == 0
    out = capsys.readouterr().out
    assert "TP4" in out and "**TP crosses nodes**" in out
    crossing = [line for line in out.splitlines() if "TP crosses nodes" in line]
    assert all(re.search(r"TP(4|8) x", line) for line in crossing)


def test_plan_needs_a_vocabulary_and_reads_memory_sizes():
    with pytest.raises(ConfigError, match="model.vocab_size"):
        main_raises(["plan", "configs/tiny.yaml", "--gpus", "1"])
    assert parse_bytes("80GiB") == parse_bytes("80GB") == 80 * GiB
    assert parse_bytes("1.5TiB") == 1.5 * 2 ** 40


def main_raises(argv):
    """mrrtf's main turns errors into exit code 2; call the command's run() to see the error."""
    from mrrtf.cli import build_parser

    args = build_parser().parse_args(argv)
    return args._run(args)
