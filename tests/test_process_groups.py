"""parallel.init.process_groups: the one owner of torch.distributed and megatron's groups. Library
calls that need them (training, export, import, perplexity) leave nothing behind."""

from __future__ import annotations

import pytest
import torch.distributed as dist
from megatron.core import parallel_state

from megatron_rrtf.config import ParallelConfig
from megatron_rrtf.parallel.init import init_distributed, process_groups

pytestmark = pytest.mark.xdist_group("model")


def nothing_left() -> bool:
    return not dist.is_initialized() and not parallel_state.model_parallel_is_initialized()


def test_groups_exist_inside_and_are_gone_after_even_on_error():
    assert nothing_left()
    with process_groups(ParallelConfig(), seed=0) as (rank, world):
        assert (rank, world) == (0, 1)
        assert parallel_state.get_tensor_model_parallel_world_size() == 1
    assert nothing_left()
    with pytest.raises(KeyError):
        with process_groups(ParallelConfig(), seed=0):
            raise KeyError("boom")
    assert nothing_left()


def test_nesting_is_refused_and_leaves_the_outer_groups_intact():
    with process_groups(ParallelConfig(), seed=0):
        with pytest.raises(RuntimeError, match="cannot nest"):
            with process_groups(ParallelConfig(), seed=0):
                pass
        assert parallel_state.model_parallel_is_initialized()
    assert nothing_left()


def test_a_default_group_the_caller_started_is_left_running():
    init_distributed()
    try:
        with process_groups(ParallelConfig(), seed=0):
            pass
        assert dist.is_initialized() and not parallel_state.model_parallel_is_initialized()
    finally:
        dist.destroy_process_group()
    assert nothing_left()


def test_export_and_import_leave_no_groups_behind(tmp_path, tiny_tokenizer_path):
    import convert_workers as workers
    import torch

    from megatron_rrtf.convert.export import export_checkpoint
    from megatron_rrtf.convert.import_hf import import_checkpoint

    workers.save_tiny_checkpoint(tmp_path / "run", tiny_tokenizer_path, [],
                                 torch.zeros(1, 4, dtype=torch.long))
    assert nothing_left()
    export_checkpoint(tmp_path / "run", tmp_path / "hf")
    assert nothing_left()
    import_checkpoint(tmp_path / "hf", tmp_path / "imported")
    assert nothing_left()
