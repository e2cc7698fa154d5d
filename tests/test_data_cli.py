"""`mrrtf preprocess` / `mrrtf data inspect` end to end, and the built-in corpus."""

from __future__ import annotations

import json
import subprocess
import sys

from megatron_rrtf.data.builtin_corpus import materialize_builtin_corpus, prose_documents


def mrrtf(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrrtf", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_builtin_corpus_is_real_code_and_prose(tmp_path):
    out = materialize_builtin_corpus(tmp_path / "corpus", code_bytes=300_000)
    code = sorted((out / "code" / "python").rglob("*.py"))
    prose = sorted((out / "nl").rglob("*.*"))
    assert code and sum(p.stat().st_size for p in code) <= 300_000
    assert any("def " in p.read_text() for p in code)
    assert len(prose) >= 50  # python reference topics + package READMEs
    # not our own README: it changes with every commit, and the demo's data must not
    assert not (out / "nl" / "package-readmes" / "megatron-rrtf.md").exists()
    assert (out / "nl" / "python-reference" / "while.txt").read_text().startswith("The \"while\"")
    stamp = json.loads((out / "CORPUS.json").read_text())
    assert stamp["code_files"] == len(code) and stamp["nl_files"] == len(prose_documents())
    before = (out / "CORPUS.json").stat().st_mtime_ns
    materialize_builtin_corpus(tmp_path / "corpus", code_bytes=300_000)
    assert (out / "CORPUS.json").stat().st_mtime_ns == before  # idempotent
    # a changed or stray file is put right: the corpus is rewritten whole
    (out / "nl" / "package-readmes" / "uninstalled-package.md").write_text("stale\n")
    (out / "nl" / "python-reference" / "while.txt").write_text("edited\n")
    (out / "CORPUS.json").unlink()
    materialize_builtin_corpus(tmp_path / "corpus", code_bytes=300_000)
    assert not (out / "nl" / "package-readmes" / "uninstalled-package.md").exists()
    assert (out / "nl" / "python-reference" / "while.txt").read_text().startswith("The \"while\"")


def test_preprocess_trains_tokenizer_then_inspect_reports(tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text(f"""
data:
  builtin_corpus: {tmp_path}/corpus
  output_dir: {tmp_path}/out
  train_tokenizer: {{vocab_size: 600, max_input_bytes: 300000}}
  workers: 2
  sources:
    - {{name: code, domain: code, language: python, weight: 0.5,
       dir: {tmp_path}/corpus/code/python, glob: "**/*.py"}}
    - {{name: prose, domain: nl, weight: 0.5, dir: {tmp_path}/corpus/nl, glob: "**/*"}}
""")
    materialize_builtin_corpus(tmp_path / "corpus", code_bytes=400_000)
    done = mrrtf("preprocess", str(config), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "code:" in done.stdout and "prose:" in done.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["tokenizer"]["vocab_size"] == 600
    assert (tmp_path / "out" / "tokenizer.model").is_file()
    shown = mrrtf("data", "inspect", str(config), "model.seq_length=64", "train.train_steps=50",
                  "--samples", "2")
    assert shown.returncode == 0, shown.stderr
    assert "effective" in shown.stderr or "epochs" in shown.stdout
    assert "--- sample 1" in shown.stdout
    assert "held-out code/python" in shown.stdout and "held-out nl" in shown.stdout


def test_preprocess_missing_path_is_one_clear_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"""
data:
  tokenizer: {tmp_path}/none.model
  output_dir: {tmp_path}/out
  sources: [{{name: x, domain: code, dir: {tmp_path}/nowhere}}]
""")
    done = mrrtf("preprocess", str(config))
    assert done.returncode == 2
    assert "data.sources[0].dir=" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
