"""`mrrtf compare-demo --grid objectives --quick` end to end at an absurdly tiny scale (micro
model, 2 steps, 1 seed, the tiny test corpus): real pretraining, real evaluation (perplexity and
infill loss; exact match's generation is covered by test_eval_stage), the report; then a rerun
that skips every finished run."""

from __future__ import annotations

import json

import pytest
import yaml

from megatron_rrtf.config.loader import to_dict
from mrrtf.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_quick_objectives_grid_trains_evaluates_reports_and_resumes(tiny_data_config, tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"data": to_dict(tiny_data_config.data)}))
    out = tmp_path / "out"
    args = ["compare-demo", "--grid", "objectives", "--quick", "--steps", "8", "--seeds", "1",
            "--preset", "micro", "--jobs", "1", "--data", str(data_yaml),
            "--infill-loss-tasks", "8", "--no-exact-match", "--out", str(out),
            "train.eval_batches=1"]
    assert main(args) == 0
    records = sorted((out / "runs").glob("objectives/*/seed0/record.json"))
    assert len(records) == 5
    for path in records:
        record = json.loads(path.read_text())
        assert record["train"]["status"] == "completed" and record["steps"] == 2
        summary = record["eval"]["summary"]
        assert "ppl/code/python/loss" in summary
        assert any(k.startswith("infill_loss/span/") and k.endswith("/bpb") for k in summary)
        assert len(record["curve"]) == 2
    report = (out / "grid_report" / "report.md").read_text()
    assert "quick mode" in report and "| Infill is not free |" in report
    assert "| all4 | 1 | 2 |" in report and (out / "grid_report" / "train_curves.png").is_file()
    stamps = [p.stat().st_mtime_ns for p in records]
    assert main(args) == 0  # everything finished: nothing is trained or evaluated again
    assert [p.stat().st_mtime_ns for p in records] == stamps
