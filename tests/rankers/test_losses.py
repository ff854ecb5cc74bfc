import math

import pytest
import torch

from blender.rankers import pairwise_logistic_loss, simcls_ranking_loss, summareranker_bce_loss
from blender.rankers.losses import (
    absolute_target_loss,
    all_pairs_logistic_loss,
    bradley_terry_loss,
    listnet_loss,
)


def test_hand_worked_value():
    # s1 − s2 = [2, −1, 3], targets [1, 1, 0]: (softplus(−2) + softplus(1)) / 2 = (0.12693 + 1.31326) / 2
    s1 = torch.tensor([[3.0], [0.0], [4.0]])
    s2 = torch.tensor([[1.0], [1.0], [1.0]])
    targets = torch.tensor([[1.0], [1.0], [0.0]])
    assert torch.isclose(pairwise_logistic_loss(s1, s2, targets), torch.tensor(0.720096), atol=1e-5)


def test_per_task_signs():
    # Task 0 prefers the first candidate, task 1 the second: −log σ(1) and −log σ(1) again.
    s1 = torch.tensor([[1.0, 0.0]])
    s2 = torch.tensor([[0.0, 1.0]])
    targets = torch.tensor([[1.0, -1.0]])
    expected = -torch.log(torch.sigmoid(torch.tensor(1.0)))
    assert torch.isclose(pairwise_logistic_loss(s1, s2, targets), expected)


def test_all_ties_give_zero_loss_and_zero_gradient():
    s1 = torch.tensor([[1.0], [2.0]], requires_grad=True)
    loss = pairwise_logistic_loss(s1, torch.zeros(2, 1), torch.zeros(2, 1))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(s1.grad == 0)


def test_simcls_hand_worked_value():
    # Docstring example: gap 1 mean(0, 0.2) = 0.1, gap 2: 0.1; total 0.2.
    scores = torch.tensor([[0.5, 0.3, 0.4]])
    signal = torch.tensor([[3.0, 2.0, 1.0]])
    assert torch.isclose(simcls_ranking_loss(scores, signal, margin=0.1), torch.tensor(0.2), atol=1e-6)


def test_simcls_sorts_by_the_signal_and_skips_near_ties():
    # The same candidates in another order give the same loss.
    scores = torch.tensor([[0.4, 0.5, 0.3]])
    signal = torch.tensor([[1.0, 3.0, 2.0]])
    assert torch.isclose(simcls_ranking_loss(scores, signal, margin=0.1), torch.tensor(0.2), atol=1e-6)
    # Signals 3.0 and 2.95 tie under min_delta 0.1: gap 1 keeps only (2.95, 1): max(0, 0.4 − 0.3 + 0.1) = 0.2;
    # gap 2 (3 vs 1): 0.1.
    tied = torch.tensor([[3.0, 2.95, 1.0]])
    loss = simcls_ranking_loss(torch.tensor([[0.5, 0.3, 0.4]]), tied, margin=0.1, min_delta=0.1)
    assert torch.isclose(loss, torch.tensor(0.3), atol=1e-6)


def test_simcls_reference_term():
    # Reference 0.45 with gold margin 0: candidates [0.5, 0.3] → mean(max(0, 0.05), 0) = 0.025, weight 2 → 0.05;
    # plus gap 1: max(0, 0.3 − 0.5 + 0.1) = 0.
    loss = simcls_ranking_loss(
        torch.tensor([[0.5, 0.3]]),
        torch.tensor([[2.0, 1.0]]),
        margin=0.1,
        reference_scores=torch.tensor([0.45]),
        gold_weight=2.0,
    )
    assert torch.isclose(loss, torch.tensor(0.05), atol=1e-6)


def test_summareranker_bce_hand_worked_value():
    logits = torch.tensor([[2.0], [-1.0]])
    labels = torch.tensor([[1.0], [0.0]])
    assert torch.isclose(summareranker_bce_loss(logits, labels), torch.tensor(0.220095), atol=1e-5)


def test_absolute_target_loss_matches_the_hand_worked_example():
    loss = absolute_target_loss(torch.tensor([[0.0], [2.0]]), torch.tensor([[0.5], [1.0]]))
    assert loss.item() == pytest.approx((math.log(2) + math.log1p(math.exp(-2))) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(0.410038, abs=1e-6)


def test_all_pairs_logistic_loss_hand_worked_example():
    # The docstring's example: pairs (0, 1) and (0, 2) are decisive, (1, 2) is a tie within 0.1.
    scores = torch.tensor([[[2.0], [0.0], [1.0]]])
    signal = torch.tensor([[[0.9], [0.5], [0.45]]])
    uniform = all_pairs_logistic_loss(scores, signal, 0.1)
    assert uniform.item() == pytest.approx((0.126928 + 0.313262) / 2, abs=1e-6)
    delta = all_pairs_logistic_loss(scores, signal, torch.tensor([0.1]), "delta")
    assert delta.item() == pytest.approx((0.4 * 0.126928 + 0.45 * 0.313262) / 0.85, abs=1e-6)
    lambda_ = all_pairs_logistic_loss(scores, signal, 0.1, "lambda")
    assert lambda_.item() == pytest.approx(0.211463, abs=1e-6)
    # Order does not matter: the same candidates shuffled give the same loss.
    order = torch.tensor([2, 0, 1])
    assert all_pairs_logistic_loss(scores[:, order], signal[:, order], 0.1).item() == pytest.approx(
        uniform.item()
    )


def test_lambda_weighting_ranks_within_each_instruction():
    # Two instructions in one batch. In the second, every score is 10 higher: ranked across the batch it would
    # take the first three places and weigh differently; ranked within itself it weighs as the first.
    scores = torch.tensor([[[2.0], [0.0], [1.0]], [[12.0], [10.0], [11.0]]])
    signal = torch.tensor([[[0.9], [0.5], [0.45]]]).repeat(2, 1, 1)
    assert all_pairs_logistic_loss(scores, signal, 0.1, "lambda").item() == pytest.approx(0.211463, abs=1e-6)
    # Swapping which of the tied pair ranks second moves the weights: (0, 1) now spans ranks 0 and 1.
    swapped = torch.tensor([[[2.0], [1.0], [0.0]]])
    w01, w02 = 0.4 * (1 - 0.630930), 0.45 * (1 - 0.5)
    expected = (w01 * 0.313262 + w02 * 0.126928) / (w01 + w02)
    assert all_pairs_logistic_loss(swapped, signal[:1], 0.1, "lambda").item() == pytest.approx(
        expected, abs=1e-6
    )


def test_all_pairs_logistic_loss_of_ties_only_is_zero_with_a_gradient():
    scores = torch.tensor([[[1.0], [0.0]]], requires_grad=True)
    loss = all_pairs_logistic_loss(scores, torch.tensor([[[0.5], [0.45]]]), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(scores.grad, torch.zeros_like(scores))
    with pytest.raises(ValueError, match="weighting='top'"):
        all_pairs_logistic_loss(scores, scores, 0.1, "top")


def test_all_pairs_logistic_loss_takes_one_threshold_per_task():
    # Task 0's gap 0.2 counts under its threshold 0.1; task 1's gap 0.2 is a tie under 0.3.
    scores = torch.tensor([[[1.0, 5.0], [0.0, 0.0]]])
    signal = torch.tensor([[[0.7, 0.7], [0.5, 0.5]]])
    loss = all_pairs_logistic_loss(scores, signal, torch.tensor([0.1, 0.3]))
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)  # softplus(-1), task 0 alone


def test_listnet_loss_hand_worked_example():
    signal = torch.tensor([[[1.0], [0.0]]])
    assert listnet_loss(torch.zeros(1, 2, 1), signal, 1.0).item() == pytest.approx(0.693147, abs=1e-6)
    scores = torch.tensor([[[1.0], [0.0]]])
    assert listnet_loss(scores, signal, 1.0).item() == pytest.approx(
        0.731059 * 0.313262 + 0.268941 * 1.313262, abs=1e-5
    )
    with pytest.raises(ValueError, match="temperature=0"):
        listnet_loss(scores, signal, 0)


def test_bradley_terry_loss_hand_worked_example():
    # Target σ((2 − 0) / 2) = σ(1) = 0.731059 for a margin of 1.
    scores, signal = torch.tensor([[[1.0], [0.0]]]), torch.tensor([[[2.0], [0.0]]])
    assert bradley_terry_loss(scores, signal, 2.0).item() == pytest.approx(
        0.731059 * 0.313262 + 0.268941 * 1.313262, abs=1e-5
    )
    # A narrow gap is no tie: equal scores cost log 2 on every pair, whatever the targets.
    flat = torch.zeros(1, 3, 1)
    assert bradley_terry_loss(flat, torch.tensor([[[0.5], [0.45], [0.0]]])).item() == pytest.approx(
        0.693147, abs=1e-6
    )
    with pytest.raises(ValueError, match="temperature=0"):
        bradley_terry_loss(scores, signal, 0)


def test_bradley_terry_loss_is_least_at_the_signal_margins():
    # Scores equal to signal / temperature (up to a constant) are the minimum: the gradient there is zero.
    signal = torch.tensor([[[1.5], [0.2], [-0.7]]])
    scores = (signal / 0.5 + 3.0).requires_grad_()
    bradley_terry_loss(scores, signal, 0.5).backward()
    torch.testing.assert_close(scores.grad, torch.zeros_like(scores), atol=1e-6, rtol=0)
    off = (signal / 0.5).clone()
    off[0, 0, 0] += 0.3
    assert bradley_terry_loss(off, signal, 0.5) > bradley_terry_loss(signal / 0.5, signal, 0.5)
