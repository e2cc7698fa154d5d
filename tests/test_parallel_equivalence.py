"""TP=2 and PP=2 (1F1B) on CPU/gloo give the same loss and gradients as one process."""

import parallel_workers as workers
import pytest
from distributed import run_distributed

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("parallel")]

TOL = 1e-5


@pytest.mark.parametrize("family", ["starcoder", "rope"])
def test_tensor_parallel_2_matches_single_process_with_mqa(family):
    results = run_distributed(workers.tensor_parallel_equivalence, 2, family, 1)
    for r in results:
        assert abs(r["loss"] - r["ref_loss"]) < TOL
        assert r["grad_diff"] < TOL
        # MQA under TP=2: each rank attends with its 2 of 4 query heads and the one shared K/V
        # head; the fused QKV projection [q (64) | k (16) | v (16)] is split row-wise.
        # core attention sees [s, b, heads, head_dim]: 2 query heads, the full K/V head.
        assert r["query_shape"] == (32, 4, 2, 16) and r["key_shape"] == (32, 4, 1, 16)
        assert r["shapes"]["decoder.layers.0.self_attention.linear_qkv.weight"] == (48, 64)
        assert r["shapes"]["embedding.word_embeddings.weight"] == (128, 64)


def test_tensor_parallel_2_matches_single_process_with_gqa():
    results = run_distributed(workers.tensor_parallel_equivalence, 2, "rope", 2)
    for r in results:
        assert abs(r["loss"] - r["ref_loss"]) < TOL and r["grad_diff"] < TOL
        assert r["query_shape"] == (32, 4, 2, 16) and r["key_shape"] == (32, 4, 1, 16)


def test_pipeline_parallel_2_one_f_one_b_matches_single_process():
    results = run_distributed(workers.pipeline_parallel_equivalence, 2, "starcoder", 4)
    first, last = results
    assert last["n_losses"] == 4 and first["n_losses"] == 0
    assert "embedding.word_embeddings.weight" in first["stage_params"]
    assert "output_layer.weight" in last["stage_params"]
    for r in results:
        assert r["loss_diff"] < TOL and r["grad_diff"] < TOL


def test_loss_falls_over_30_steps_on_a_repeated_batch():
    (losses,) = run_distributed(workers.loss_falls_on_repeated_batch, 1, 30)
    assert losses[-1] < 0.5 * losses[0], losses
