"""RRTF / RRHF losses: hand-computed values, gradient directions, tie and filtering rules."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.rrtf.losses import ranking_loss, rrhf_loss, rrtf_loss


def t(*xs, dtype=torch.float64):
    return torch.tensor(xs, dtype=dtype)


def test_rrtf_value_matches_hand_computation():
    # candidates: teacher (passes, r=3), student A (runtime error, r=1), student B (passes, r=3)
    logp = t(-6.0, -1.0, -9.0)
    lengths = t(3, 1, 3)                      # p = -2, -1, -3 (each by its own length)
    scores = t(3.0, 1.0, 3.0)
    teacher = torch.tensor([True, False, False])
    out = rrtf_loss(logp, lengths, scores, teacher, tie_weight=0.5)
    # pair (T, A): gap 2, hinge max(0, -1 - -2) = 1 -> 2
    # pair (T, B): tie -> weight 0.5, hinge max(0, -3 - -2) = 0 -> 0
    assert out.rank.item() == pytest.approx(2.0)
    assert out.ft.item() == pytest.approx(6.0)          # summed NLL of the teacher, not /3
    assert out.total.item() == pytest.approx(8.0)
    assert out.num_pairs == 2 and out.num_ft == 1


def test_rrtf_uses_each_responses_own_length():
    logp = t(-10.0, -4.0)
    lengths = t(10, 2)                        # p = -1 (teacher), -2 (student): already ordered
    out = rrtf_loss(logp, lengths, t(3.0, 0.0), torch.tensor([True, False]), sft_weight=0.0)
    assert out.rank.item() == 0.0
    # With a padded length of 10 for both (RRHF's bug) the student would look better: -0.4 > -1.
    out_bug = rrtf_loss(logp, t(10, 10), t(3.0, 0.0), torch.tensor([True, False]), sft_weight=0.0)
    assert out_bug.rank.item() == pytest.approx(3.0 * 0.6)


def test_rrtf_gradient_raises_teacher_and_lowers_student():
    logp = t(-8.0, -2.0).requires_grad_()
    out = rrtf_loss(logp, t(4, 2), t(3.0, 1.0), torch.tensor([True, False]), sft_weight=0.0)
    out.total.backward()
    assert logp.grad[0] < 0 < logp.grad[1]    # descent raises the teacher, lowers the student


def test_rrtf_drops_pairs_where_the_teacher_scores_below_the_student():
    logp = t(-8.0, -1.0).requires_grad_()
    out = rrtf_loss(logp, t(1, 1), t(0.0, 3.0), torch.tensor([True, False]), sft_weight=0.0)
    assert out.num_pairs == 0 and out.rank.item() == 0.0
    out.total.backward()
    assert torch.all(logp.grad == 0)


def test_tie_rule_teacher_ranks_above_student_at_equal_score():
    logp = t(-3.0, -1.0)
    on = rrtf_loss(logp, t(1, 1), t(3.0, 3.0), torch.tensor([True, False]),
                   sft_weight=0.0, tie_weight=0.5)
    assert on.rank.item() == pytest.approx(0.5 * 2.0) and on.num_pairs == 1
    off = rrtf_loss(logp, t(1, 1), t(3.0, 3.0), torch.tensor([True, False]),
                    sft_weight=0.0, tie_weight=0.0)
    assert off.rank.item() == 0.0 and off.num_pairs == 0


def test_prompt_without_teacher_or_pairs_contributes_zero_but_counts_in_mean():
    logp = torch.tensor([[-4.0, -1.0], [-2.0, -5.0]], dtype=torch.float64)
    lengths = torch.ones(2, 2, dtype=torch.float64)
    scores = torch.tensor([[3.0, 0.0], [3.0, 3.0]], dtype=torch.float64)
    teacher = torch.tensor([[True, False], [False, False]])     # prompt 1: students only
    out = rrtf_loss(logp, lengths, scores, teacher, tie_weight=0.5)
    assert out.rank.item() == pytest.approx(3.0 * 3.0 / 2)      # only prompt 0 has a pair
    assert out.ft.item() == pytest.approx(4.0 / 2)
    assert out.num_ft == 1
    assert torch.isfinite(out.total)


def test_invalid_candidates_are_ignored():
    logp = torch.tensor([[-1.0, -1.0, float("nan")]], dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[True, True, False]])
    out = rrtf_loss(logp, torch.ones(1, 3), torch.tensor([[3.0, 3.0, 0.0]]),
                    torch.tensor([[True, False, False]]), valid)
    out.total.backward()
    assert math.isfinite(out.total.item()) and torch.isfinite(logp.grad[0, :2]).all()


def test_min_ft_score_skips_sft_on_a_failing_teacher():
    out = rrtf_loss(t(-5.0, -1.0), t(1, 1), t(1.0, 0.0), torch.tensor([True, False]),
                    min_ft_score=3.0)
    assert out.num_ft == 0 and out.ft.item() == 0.0


def test_rank_weight_zero_is_plain_sft_on_best_teacher():
    logp = t(-5.0, -7.0, -1.0).requires_grad_()
    out = rrtf_loss(logp, t(1, 1, 1), t(2.5, 3.0, 0.0), torch.tensor([True, True, False]),
                    rank_weight=0.0)
    assert out.total.item() == pytest.approx(7.0)               # best teacher is index 1
    out.total.backward()
    assert logp.grad.tolist() == [0.0, -1.0, 0.0]


def test_rrhf_value_matches_hand_computation():
    logp = t(-2.0, -6.0, -3.0)
    lengths = t(2, 3, 1)                      # p = -1, -2, -3
    scores = t(0.0, 3.0, 1.0)
    out = rrhf_loss(logp, lengths, scores)
    # pairs r_i < r_j: (0,1): max(0,-1+2)=1; (0,2): max(0,-1+3)=2; (2,1): max(0,-3+2)=0
    assert out.rank.item() == pytest.approx(3.0) and out.num_pairs == 3
    assert out.ft.item() == pytest.approx(2.0)                  # mean NLL of best: 6 / 3
    via = ranking_loss("rrhf", logp, lengths, scores, torch.tensor([False, True, False]),
                       tie_weight=0.5)
    assert via.total.item() == pytest.approx(5.0)


def test_rrhf_best_response_tie_prefers_teacher():
    logp = t(-2.0, -8.0)
    out = rrhf_loss(logp, t(1, 1), t(3.0, 3.0), is_teacher=torch.tensor([False, True]))
    assert out.ft.item() == pytest.approx(8.0) and out.rank.item() == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-20, -0.1), st.integers(1, 50),
                          st.sampled_from([0.0, 1.0, 2.5, 3.0]), st.booleans()),
                min_size=2, max_size=6))
def test_rank_gradient_never_lowers_a_better_teacher_or_raises_a_worse_student(cands):
    logp = torch.tensor([c[0] for c in cands], dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([c[1] for c in cands], dtype=torch.float64)
    scores = torch.tensor([c[2] for c in cands], dtype=torch.float64)
    teacher = torch.tensor([c[3] for c in cands])
    out = rrtf_loss(logp, lengths, scores, teacher, sft_weight=0.0)
    assert out.rank.item() >= 0
    out.total.backward()
    # d loss / d logp: <= 0 for teachers (pushed up), >= 0 for students (pushed down)
    assert all(g <= 0 for g, is_t in zip(logp.grad.tolist(), teacher.tolist()) if is_t)
    assert all(g >= 0 for g, is_t in zip(logp.grad.tolist(), teacher.tolist()) if not is_t)
