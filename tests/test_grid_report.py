"""The grid report, rendered from synthetic run records: lesson table, mean ± sd tables with the
noise mark, with and without evaluations."""

from __future__ import annotations

import statistics

import pytest

from megatron_rrtf.eval.grid_report import (
    aggregate_settings,
    lesson_rows,
    render_grid_report,
    write_grid_report,
)

CODE = {"causal": 4.00, "causal+span": 4.40, "causal+fim": 4.01, "causal+prefix_lm": 4.05,
        "all4": 4.30}
SPREAD = (-0.02, 0.0, 0.02)  # per-seed offsets: sd 0.02


def record(setting, seed, evaluated=True, axis="objectives", code=None):
    summary = None
    if evaluated:
        loss = (code if code is not None else CODE[setting]) + SPREAD[seed]
        summary = {"ppl/code/python/loss": loss, "ppl/code/python/bpb": loss / 2,
                   "ppl/nl/loss": 6.0, "ppl/nl/bpb": 3.0}
        for fmt in ("span", "fim_psm", "fim_spm"):
            learnt = (setting == "causal+span" and fmt == "span") or \
                (setting == "causal+fim" and fmt != "span")
            for kind in ("single_line", "multi_line", "random_span"):
                bpb = (2.0 if learnt else 3.0) + SPREAD[seed]
                summary[f"infill_loss/{fmt}/{kind}/bpb"] = bpb
                summary[f"infill_loss/{fmt}/{kind}/loss"] = bpb * 1.5
                summary[f"infill_loss/{fmt}/{kind}/exact_match"] = 0.0
    return {"key": f"{axis}/{setting}/seed{seed}", "axis": axis, "setting": setting,
            "seed": seed, "steps": 100, "describe": f"{setting} described",
            "train": {"train_time_s": 10.0 + seed, "effective_epochs": {"py": 0.5, "nl": 1.25}},
            "curve": [[10 * i, 5.0 - i / 10 + seed / 100] for i in range(1, 30)],
            "eval": {"summary": summary, "wall_time_s": 1.0, "step": 100} if evaluated
            else None}


def records(seeds=3, evaluated=True):
    return [record(s, k, evaluated) for k in range(seeds) for s in CODE]


META = {"command": "mrrtf compare-demo --grid objectives", "steps": 100, "seeds": 3,
        "preset": "tiny", "machine": "test box, 2 CPUs", "wall_time_s": 125.0}


def rows_by_title():
    return {row[0]: row for row in lesson_rows(aggregate_settings(records()))}


def test_seed_aggregation_gives_the_mean_and_sample_sd_per_setting():
    stats = aggregate_settings(records())
    code = stats[("objectives", "causal+span")]["code loss"]
    assert code.n == 3 and code.mean == pytest.approx(statistics.fmean([4.38, 4.40, 4.42]))
    assert abs(code.sd - statistics.stdev([4.38, 4.40, 4.42])) < 1e-12
    assert stats[("objectives", "causal")]["infill bpb span"].mean == 3.0


def test_lesson_table_marks_only_differences_beyond_seed_noise():
    rows = rows_by_title()
    not_free = rows["Infill is not free"]
    assert "= +0.400" in not_free[2] and not_free[3] == "yes" and not_free[4] == "yes"
    fim_free = rows["FIM for free"]  # +0.01 with sd 0.02 over 3 seeds: within noise
    assert "= +0.010" in fim_free[2] and fim_free[3] == "no" and fim_free[4] == "yes"
    prefix = rows["Prefix-LM"]  # +0.05 > 2 * sqrt(2 * 0.02**2 / 3) = 0.033
    assert prefix[3] == "yes" and prefix[4] == "no (higher)"
    teaches = rows["Span corruption teaches infilling"]
    assert "= -1.000" in teaches[2] and teaches[4] == "yes"
    assert "Mixing NL with code" not in rows  # the data axis is not in this grid


def test_report_with_evaluations_has_lessons_tables_machine_and_wall_time():
    text = render_grid_report(records(), META)
    assert text.index("## Lessons") < text.index("## Axis: objectives")
    assert "Bavarian et al. 2022" in text and "Infill is not free" in text
    assert "test box, 2 CPUs" in text and "2.1 min" in text
    assert "| causal+span | 3 | 100 | 4.400 ± 0.020 * |" in text
    assert "| causal | 3 | 100 | 4.000 ± 0.020 |" in text  # the baseline is never marked
    assert "| causal+fim | 3 | 100 | 4.010 ± 0.020 |" in text  # within noise: no mark
    assert "### Infill bits per byte" in text and "quick mode" not in text
    assert "- causal+fim: causal+fim described; passes over each source's training data: " \
        "py 0.50, nl 1.25" in text
    assert "quick mode" in render_grid_report(records(), {**META, "quick": True})


def test_the_report_says_whether_fim_came_for_free_and_span_did_not():
    text = render_grid_report(records(), META)
    assert "- FIM (causal 0.5 + FIM 0.5): Δ code loss +0.010, within seed noise" in text
    assert "span corruption 0.5): Δ code loss +0.400, beyond seed noise: infill is not free" \
        in text
    assert "Which holds here" not in render_grid_report(records(seeds=1), META)


def test_report_without_evaluations_says_so_everywhere():
    text = render_grid_report(records(evaluated=False), META)
    assert "code loss: not evaluated" in text
    assert "| causal | 3 | 100 | not evaluated | 11 ± 1 |" in text
    assert "Not evaluated (15 runs)" in text and "### Infill" not in text


def test_pass_at_k_columns_appear_only_when_evaluated():
    assert "humaneval pass@1" not in render_grid_report(records(), META)
    with_passk = records()
    for r in with_passk:
        r["eval"]["summary"]["humaneval/greedy/pass@1"] = 0.25
        r["eval"]["summary"]["infill/span/single_line/pass@1"] = 0.5
    text = render_grid_report(with_passk, META)
    assert "| exact match | humaneval pass@1 | infill pass@1 |" in text
    assert "| 0.000 ± 0.000 | 0.250 ± 0.000 | 0.500 ± 0.000 |" in text


def test_one_seed_cannot_say_whether_a_difference_is_noise():
    rows = {r[0]: r for r in lesson_rows(aggregate_settings(records(seeds=1)))}
    assert rows["Infill is not free"][3].startswith("n/a")
    assert rows["Infill is not free"][4] == "cannot say"


def test_a_partly_evaluated_grid_renders_and_writes_its_plots(tmp_path):
    mixed = records()[:10] + records(evaluated=False)[10:]
    mixed += [record("code", k, axis="data", code=4.2) for k in range(3)]
    mixed += [record("code+nl", k, axis="data", code=4.25) for k in range(3)]
    path = write_grid_report(mixed, tmp_path, META)
    text = path.read_text()
    assert "Mixing NL with code" in text and "## Axis: data" in text
    for png in ("train_curves.png", "code_loss.png", "infill_bpb.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"({png})" in text
