"""The one export cache (convert.export_cache.hf_model_dir): exported once per save, re-exported
when the step is saved again, never a half-written directory, one export under concurrency."""

from __future__ import annotations

import shutil
import threading

import convert_workers as workers
import pytest
import torch

from megatron_rrtf.convert import export as export_module
from megatron_rrtf.convert.export_cache import SOURCE_FILE, hf_model_dir
from megatron_rrtf.errors import CheckpointError

pytestmark = pytest.mark.xdist_group("convert")


@pytest.fixture
def run_dir(tmp_path, tiny_tokenizer_path):
    run = tmp_path / "run"
    workers.save_tiny_checkpoint(run, tiny_tokenizer_path, [], torch.zeros(1, 4, dtype=torch.long))
    return run


@pytest.fixture
def exports(monkeypatch):
    """The real export, counted."""
    calls = []
    real = export_module.export_checkpoint

    def counted(step_dir, out_dir, *args, **kwargs):
        calls.append(step_dir)
        return real(step_dir, out_dir, *args, **kwargs)

    monkeypatch.setattr(export_module, "export_checkpoint", counted)
    return calls


def test_a_save_is_exported_once_beside_its_run(run_dir, exports):
    first = hf_model_dir(run_dir)
    assert first == run_dir / "eval" / f"hf_{workers.STEP}"
    assert (first / "config.json").is_file() and (first / SOURCE_FILE).is_file()
    assert hf_model_dir(run_dir / "checkpoints" / workers.STEP) == first
    assert len(exports) == 1
    assert hf_model_dir(first) == first  # an HF directory is used as it is


def test_saving_the_step_again_makes_the_export_stale(run_dir, exports, tiny_tokenizer_path):
    first = hf_model_dir(run_dir)
    before = (first / "model.safetensors").read_bytes()
    shutil.rmtree(run_dir / "checkpoints")  # a resumed run re-saves the step: a new directory
    workers.save_tiny_checkpoint(run_dir, tiny_tokenizer_path, [], torch.zeros(1, 4).long(),
                                 seed=12)
    assert hf_model_dir(run_dir) == first and len(exports) == 2
    assert (first / "model.safetensors").read_bytes() != before


def test_an_interrupted_export_is_never_taken_for_a_finished_one(run_dir, exports,
                                                                monkeypatch):
    def dies_half_way(step_dir, out_dir, *args, **kwargs):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(export_module, "export_checkpoint", dies_half_way)
        with pytest.raises(KeyboardInterrupt):
            hf_model_dir(run_dir)
    cached = run_dir / "eval" / f"hf_{workers.STEP}"
    assert not cached.exists()
    assert hf_model_dir(run_dir) == cached and (cached / "model.safetensors").is_file()
    assert [p.name for p in cached.parent.iterdir() if p.is_dir()] == [cached.name]


def test_concurrent_readers_export_once(run_dir, exports):
    results, errors = [], []

    def read():
        try:
            results.append(hf_model_dir(run_dir))
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1 and len(exports) == 1


def test_a_path_that_is_no_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        hf_model_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="or a Hugging Face model directory"):
        hf_model_dir(tmp_path / "empty")
