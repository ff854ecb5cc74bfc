import torch

from blender.rankers import pairwise_logistic_loss


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
