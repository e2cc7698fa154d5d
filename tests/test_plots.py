"""Training curves: TensorBoard-style debiased EMA smoothing, drawn over the raw curve."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from megatron_rrtf.training.plots import ema_smooth, plot_runs

series = st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1,
                  max_size=50)
weights = st.floats(min_value=0.0, max_value=0.99)


@given(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
       st.integers(min_value=1, max_value=60), weights)
def test_a_constant_series_stays_constant_from_the_first_step(value, n, weight):
    smoothed = ema_smooth([value] * n, weight)
    assert all(math.isclose(s, value, rel_tol=1e-9, abs_tol=1e-9) for s in smoothed)


@given(series, weights)
def test_smoothed_values_stay_within_the_raw_range_and_start_at_the_first(values, weight):
    smoothed = ema_smooth(values, weight)
    assert len(smoothed) == len(values) and smoothed[0] == pytest.approx(values[0])
    lo, hi = min(values), max(values)
    assert all(lo - 1e-6 * (1 + abs(lo)) <= s <= hi + 1e-6 * (1 + abs(hi)) for s in smoothed)


def test_debiasing_weights_the_first_steps_like_a_plain_average():
    # without debiasing s_1 would be 0.1 * x_1 = 0.4 (pulled towards 0); debiased it is the
    # weighted mean of what was seen: (0.9 * 0.1 * 4 + 0.1 * 2) / (1 - 0.81)
    assert ema_smooth([4.0, 2.0], 0.9) == pytest.approx([4.0, (0.36 + 0.2) / 0.19])
    assert ema_smooth([3.0, 1.0, 5.0], 0.0) == [3.0, 1.0, 5.0]


def test_a_step_change_is_followed_gradually():
    smoothed = ema_smooth([0.0] * 20 + [1.0] * 20, 0.9)
    assert smoothed[19] == pytest.approx(0.0) and 0.05 < smoothed[20] < 0.15
    assert all(a < b for a, b in zip(smoothed[20:], smoothed[21:]))


def test_weights_outside_zero_to_one_are_refused():
    with pytest.raises(ValueError, match="must be in"):
        ema_smooth([1.0], 1.0)


def test_plot_runs_draws_smoothed_train_curves_for_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"kind": "train", "step": s, "consumed_tokens": 100 * s, "loss": 5.0 - s / 50}
               for s in range(1, 51)] + [{"kind": "eval", "step": 50, "eval/code/loss": 4.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = plot_runs([run], tmp_path / "plots", smoothing=0.8)
    assert [p.name for p in paths] == ["train_loss.png", "eval_loss.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_mrrtf_plot_refuses_a_smoothing_weight_of_one(tmp_path):
    from mrrtf.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": 1.0})
                                       + "\n")
    assert main(["plot", str(run), "--smoothing", "1", "--out", str(tmp_path / "p")]) == 2
    assert main(["plot", str(run), "--smoothing", "0", "--out", str(tmp_path / "p")]) == 0
