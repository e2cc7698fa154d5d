"""The ranking study (align/study.py, align/study_report.py): what a ranked set offers beyond
the teacher's best answer, the report's noise marks, the arms' shared start / data / steps, and
resumption. The end-to-end run is the real pipeline at an absurdly small scale."""

from __future__ import annotations

import json

import pytest

from align.study_report import pair_counts, study_report


def _resp(source: str, category: str, score: float) -> dict:
    return {"source": source, "is_teacher": source.startswith("teacher"), "category": category,
            "score": score}


def test_pair_counts_see_students_that_pass_outrank_or_tie_teachers():
    records = [
        # the teacher passes and one student ties it; the other student fails to compile
        {"responses": [_resp("teacher:demo", "passed", 3.0), _resp("student", "passed", 3.0),
                       _resp("student", "compile_error", 0.0)]},
        # only a student passes: it outranks the buggy teacher and the other student
        {"responses": [_resp("student", "passed", 3.0), _resp("teacher:demo", "partial", 2.5),
                       _resp("student", "runtime_error", 1.0)]},
    ]
    c = pair_counts(records)
    assert c["student_samples"] == 4 and c["student_passed"] == 2
    assert c["student_pass_share"] == pytest.approx(0.5)
    # problem 1: passing student > compile error (1); problem 2: passing > teacher, > runtime (2),
    # runtime error student above nothing
    assert c["student_above_other"] == 3
    assert c["student_ties_teacher"] == 1
    assert c["problems_only_student_passes"] == 1


def test_pair_counts_of_a_student_that_never_passes_hold_no_pass_information():
    records = [{"responses": [_resp("teacher:demo", "passed", 3.0),
                              _resp("student", "compile_error", 0.0),
                              _resp("student", "compile_error", 0.0)]}]
    c = pair_counts(records)
    assert (c["student_passed"], c["student_ties_teacher"], c["student_above_other"],
            c["problems_only_student_passes"]) == (0, 0, 0, 0)


def _record(seed: int, start: float, rrtf: float, rrhf: float, sft: float) -> dict:
    return {"seed": seed, "pass@1": {"start": start, "rrtf": rrtf, "rrhf": rrhf, "sft": sft},
            "round2": {"student_pass_share": 0.25, "student_above_other": 100 + seed,
                       "student_ties_teacher": 40, "student_samples": 8, "student_passed": 2,
                       "problems_only_student_passes": 1}, "seconds": 60.0}


def _row(report: str, label: str) -> list[str]:
    line = next(ln for ln in report.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_marks_only_differences_beyond_seed_noise():
    # RRTF clearly above SFT-only (tight seeds); RRHF vs SFT-only within their spread
    records = [_record(1, 0.10, 0.60, 0.50, 0.40), _record(2, 0.12, 0.62, 0.40, 0.42),
               _record(3, 0.08, 0.61, 0.60, 0.41)]
    report = study_report(records)
    assert _row(report, "mean ± sd")[1:5] == ["10.0 ± 2.0", "61.0 ± 1.0", "50.0 ± 10.0",
                                            "41.0 ± 1.0"]
    assert _row(report, "RRTF − SFT-only") == ["RRTF − SFT-only", "+20.0", "yes",
                                                "+20.0, +20.0, +20.0"]
    assert _row(report, "RRHF − SFT-only") == ["RRHF − SFT-only", "+9.0", "no",
                                                "+10.0, -2.0, +19.0"]
    assert _row(report, "RRTF − RRHF")[2] == "no"
    assert _row(report, "SFT-only − round 1 (start)")[1:3] == ["+31.0", "yes"]
    assert _row(report, "2")[1:5] == ["12.0", "62.0", "40.0", "42.0"]
    assert "n = 3 seeds" in report


def test_report_shows_the_rrhf_control_only_when_it_was_run():
    three = study_report([_record(1, 0.1, 0.6, 0.5, 0.4), _record(2, 0.1, 0.6, 0.5, 0.4)])
    assert "RRHF's CE" not in three
    records = [_record(s, 0.1, 0.6, 0.5, 0.4) for s in (1, 2)]
    for r, v in zip(records, (0.45, 0.47)):
        r["pass@1"]["sft_rrhf"] = v
    four = study_report(records)
    assert _row(four, "mean ± sd")[5] == "46.0 ± 1.4"
    assert _row(four, "RRHF − SFT-only (RRHF's CE)")[1:4] == ["+4.0", "yes", "+5.0, +3.0"]


def test_report_of_one_seed_says_noise_cannot_be_judged():
    report = study_report([_record(1, 0.1, 0.6, 0.5, 0.4)])
    assert _row(report, "RRTF − SFT-only")[2].startswith("n/a")


def test_study_overrides_make_arms_differ_only_in_their_loss(tmp_path):
    from align.study import StudySettings, study_overrides

    s = StudySettings(round2_steps=7)
    arms = {a: study_overrides(s, a, tmp_path / "start") for a in s.arms}
    shared = set.intersection(*(set(v) for v in arms.values()))
    assert {"train.train_steps=7", f"checkpoint.init_from={tmp_path / 'start'}",
            "rrtf.rounds=1", "rrtf.student.samples=4"} <= shared
    assert {a: sorted(set(v) - shared) for a, v in arms.items()} == {
        "rrtf": ["rrtf.loss=rrtf"], "rrhf": ["rrtf.loss=rrhf"],
        "sft": ["rrtf.loss=rrtf", "rrtf.rank_weight=0"],
        "sft_rrhf": ["rrtf.loss=rrhf", "rrtf.rank_weight=0"]}


def test_unknown_arms_are_refused_by_name():
    from align.study import StudySettings
    from megatron_rrtf.errors import ConfigError

    with pytest.raises(ConfigError, match="'dpo'.*rrtf, rrhf, sft, sft_rrhf"):
        StudySettings(arms=("rrtf", "dpo"))


def test_a_seed_finished_with_other_settings_is_refused(tmp_path):
    from align.study import StudySettings, run_study_seed
    from megatron_rrtf.errors import ConfigError

    seed_dir = tmp_path / "seed_1"
    seed_dir.mkdir()
    (seed_dir / "study_meta.json").write_text(json.dumps({"settings": {"round1_steps": 9}}))
    with pytest.raises(ConfigError, match="study_meta.json.*other settings.*delete"):
        run_study_seed(tmp_path / "pretrain", tmp_path, 1, StudySettings())
    assert not (seed_dir / "data").exists()  # refused before anything was written


def test_a_stopped_round_is_not_taken_for_a_finished_model():
    from align.study import _finished
    from megatron_rrtf.errors import CheckpointError

    stopped = {"final": "pretrain", "rounds": [{"dir": "r/round_1", "train": {
        "status": "interrupted", "step": 40}}]}
    with pytest.raises(CheckpointError, match="arm rrhf of seed 2 stopped at step 40.*re-run"):
        _finished(stopped, "arm rrhf of seed 2")
    stopped["rounds"][0]["train"]["status"] = "completed"
    assert str(_finished(stopped, "x")) == "pretrain"


@pytest.mark.slow
@pytest.mark.xdist_group("rrtf_demo")
@pytest.mark.usefixtures("one_torch_thread")
def test_study_trains_every_arm_from_one_start_on_one_ranked_file_and_resumes(
        tiny_data_config, tmp_path, monkeypatch, capsys):
    import align.evaluate
    import align.train
    from align.demo import DemoData
    from align.study import StudySettings, run_study
    from mrrtf.cli import main
    from pretrain.run import run_pretrain
    from tests.pretrain_runs import pretrain_config

    pretrained = tmp_path / "pretrain"
    run_pretrain(pretrain_config(tiny_data_config, pretrained, "train.train_steps=2",
                                 "model.seq_length=256"))
    settings = StudySettings(round1_steps=2, round2_steps=3, round2_samples=2)
    data = DemoData(train=6, heldout=3)
    overrides = ["rrtf.student.max_new_tokens=8", "logging.progress_bar=false"]
    args = (pretrained, tmp_path / "study", (1,), settings, data, overrides)
    # the first run through the command line, flags as the docs give them
    assert main(["rrtf", "study", "--pretrained", str(pretrained), "--out",
                 str(tmp_path / "study"), "--seeds", "1", "--round1-steps", "2",
                 "--round2-steps", "3", "--round2-samples", "2", "--train", "6",
                 "--heldout", "3", *overrides]) == 0
    assert "Does ranking add to SFT?" in capsys.readouterr().out
    [record] = json.loads((tmp_path / "study" / "study.json").read_text())
    report = tmp_path / "study" / "report.md"

    start = record["start_model"]
    assert set(record["arms"]) == {"rrtf", "rrhf", "sft", "sft_rrhf"}
    for arm, meta in record["arms"].items():  # as each arm's training run recorded it
        assert meta["init_from"] == start, arm
        assert meta["ranked_sha256"] == record["ranked_sha256"], arm
        assert meta["train_steps"] == meta["step"] == 3, arm
    assert {a: (m["loss"], m["rank_weight"]) for a, m in record["arms"].items()} == {
        "rrtf": ("rrtf", 1.0), "rrhf": ("rrhf", 1.0), "sft": ("rrtf", 0.0),
        "sft_rrhf": ("rrhf", 0.0)}
    assert record["round2"]["student_samples"] == 6 * 2
    assert set(record["pass@1"]) == {"start", "rrtf", "rrhf", "sft", "sft_rrhf"}
    assert "| 1 |" in report.read_text()

    # a rerun with the seed's record removed: nothing is trained or evaluated again
    seed_dir = tmp_path / "study" / "seed_1"
    (seed_dir / "study.json").unlink()
    trained: list[str] = []
    real_train = align.train.run_rrtf_train

    def counting_train(config, ranked):
        trained.append(config.logging.run_dir)
        return real_train(config, ranked)

    def no_eval(*a, **k):
        raise AssertionError("a finished evaluation was redone")

    monkeypatch.setattr(align.train, "run_rrtf_train", counting_train)
    monkeypatch.setattr(align.evaluate, "evaluate_model", no_eval)
    [again], _ = run_study(*args)
    assert trained == [] and again["pass@1"] == record["pass@1"]

    # an unfinished arm is the only thing redone
    import shutil

    shutil.rmtree(seed_dir / "arms" / "sft")
    (seed_dir / "study.json").unlink()
    (seed_dir / "eval_sft.json").unlink()
    monkeypatch.setattr(align.evaluate, "evaluate_model", lambda *a, **k: {
        "heldout/pass@1 (greedy)": 0.0})
    [third], _ = run_study(*args)
    assert trained == [str(seed_dir / "arms" / "sft" / "round_1")]
    assert third["arms"]["sft"]["ranked_sha256"] == record["ranked_sha256"]
