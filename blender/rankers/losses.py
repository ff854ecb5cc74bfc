"""Pairwise ranking losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pairwise_logistic_loss(scores_first: Tensor, scores_second: Tensor, targets: Tensor) -> Tensor:
    """−log σ(sign(Δ) · (s1 − s2)), averaged over the non-tied (pair, task) entries.

    The original's "instructgpt" loss (PAPER.md §4a). Ties (target 0) contribute nothing: the original
    keeps them in the mean as a constant log 2, which only rescales the gradient by the share of ties.

    Args:
        scores_first: [batch, n_tasks] scores of the first candidate of each pair.
        scores_second: [batch, n_tasks] scores of the second candidate.
        targets: [batch, n_tasks] sign(Δ) in {−1, 0, +1}.
    Returns:
        Scalar loss (0 with a zero gradient when every entry is a tie).

    Example: s1 − s2 = [2, −1, 3] with targets [1, 1, 0] gives
    (softplus(−2) + softplus(1)) / 2 = (0.1269 + 1.3133) / 2 = 0.7201.
    """
    decisive = targets != 0
    if not decisive.any():
        return (scores_first - scores_second).sum() * 0.0
    margins = targets * (scores_first - scores_second)
    # softplus(−x) = −log σ(x), computed stably.
    return F.softplus(-margins[decisive]).mean()
