"""Ranking losses: PairRanker's pairwise logistic loss (and an optional absolute-target term), SimCLS's margin
ranking loss, SummaReranker's BCE, and the listwise ranker's all-pairs logistic, Bradley-Terry and ListNet
losses."""

from __future__ import annotations

import torch
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


def absolute_target_loss(scores: Tensor, signal: Tensor) -> Tensor:
    """BCE of each candidate's own score against its signal read as a probability (an *absolute* target).

    Not in the paper, whose PairRanker learns only sign(Δ) within an instruction. The pairwise loss says
    which of two answers is better, not by how much, and says nothing about two tied answers; this term
    tells the head each answer's level (gpt4_pref 0.29 for a typical 1B answer, 0.72 for a 9B one) on every
    pass, so both candidates of every pair teach something. Used as
    `pairwise + ranker.sampling.absolute_weight × this`.

    Args:
        scores: [candidates, n_tasks] per-candidate logits (s1 and s2 of the pairs, stacked).
        signal: [candidates, n_tasks] targets in [0, 1].
    Returns:
        Scalar loss: mean over (candidate, task) of BCE(σ(score), signal).

    Example: scores [[0], [2]], signal [[0.5], [1.0]]: (log 2 + softplus(−2)) / 2 = (0.693147 + 0.126928) / 2
    = 0.410038.
    """
    return F.binary_cross_entropy_with_logits(scores, signal)


def simcls_ranking_loss(
    scores: Tensor,
    signal: Tensor,
    margin: float,
    min_delta: float = 0.0,
    reference_scores: Tensor | None = None,
    gold_margin: float = 0.0,
    gold_weight: float = 1.0,
) -> Tensor:
    """SimCLS's ranking loss (Liu & Liu 2021, `RankingLoss`): candidates ordered by the training signal,
    a hinge on every ordered pair whose margin grows with the rank gap.

    Sort each row's candidates by `signal`, best first; for every rank gap g = j − i ≥ 1 the loss is the mean,
    over the pairs (i, j) at that gap, of max(0, s_j − s_i + margin · g), and the gaps are summed, as the
    original (one `MarginRankingLoss(margin * g)` per gap, each averaged over its pairs). Pairs whose signals
    differ by `min_delta` or less are left out (the original ranks by ROUGE, which has no near-ties; gpt4_pref
    does). With `reference_scores` (the reference answer's score, SimCLS's "gold summary"), add
    gold_weight · mean_j max(0, s_j − s_ref + gold_margin).

    Args:
        scores: [batch, n] model scores of each candidate (cosine similarities for SimCLS).
        signal: [batch, n] training signal, higher is better (only its order and gaps are used).
        margin: λ, the margin per rank of gap.
        min_delta: signal differences at or below this are ties: no pair.
        reference_scores: [batch] scores of the reference answers, or None.
        gold_margin: margin of the reference over each candidate.
        gold_weight: weight of the reference term.
    Returns:
        Scalar loss.

    Example: scores already in signal order [0.5, 0.3, 0.4], signal [3, 2, 1], margin 0.1. Gap 1: pairs
    (0, 1): max(0, 0.3 − 0.5 + 0.1) = 0 and (1, 2): max(0, 0.4 − 0.3 + 0.1) = 0.2, mean 0.1. Gap 2: pair
    (0, 2): max(0, 0.4 − 0.5 + 0.2) = 0.1. Loss 0.1 + 0.1 = 0.2.
    """
    order = torch.argsort(signal, dim=1, descending=True, stable=True)
    sorted_scores = torch.gather(scores, 1, order)
    sorted_signal = torch.gather(signal, 1, order)
    total = scores.sum() * 0.0
    n = scores.shape[1]
    for gap in range(1, n):
        better, worse = sorted_scores[:, :-gap], sorted_scores[:, gap:]
        decisive = (sorted_signal[:, :-gap] - sorted_signal[:, gap:]) > min_delta
        if decisive.any():
            total = total + F.relu(worse - better + margin * gap)[decisive].mean()
    if reference_scores is not None and gold_weight:
        total = total + gold_weight * F.relu(scores - reference_scores.unsqueeze(1) + gold_margin).mean()
    return total


def summareranker_bce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """SummaReranker's per-task binary cross-entropy (the original's `MoE_BCE`, without the mixture of experts).

    Each selected candidate is a positive (label 1) on a task when it has the instruction's best signal on
    that task, else a negative; the loss is the mean over (candidate, task) of BCE(σ(logit), label).

    Args:
        logits: [candidates, n_tasks] one logit per task.
        labels: [candidates, n_tasks] in {0, 1}.
    Returns:
        Scalar loss.

    Example: logits [[2], [−1]], labels [[1], [0]]: (softplus(−2) + softplus(−1)) / 2
    = (0.126928 + 0.313262) / 2 = 0.220095.
    """
    return F.binary_cross_entropy_with_logits(logits, labels)


def all_pairs_logistic_loss(
    scores: Tensor, signal: Tensor, min_delta: Tensor | float = 0.0, weighting: str = "uniform"
) -> Tensor:
    """PairRanker's logistic loss over every pair of an instruction's candidates at once (the listwise ranker).

    For each instruction, task t and pair (i, j) with signal_i − signal_j > min_delta_t (i the better one; each
    unordered pair once, ties within min_delta left out), the term is softplus(−(s_i − s_j)) = −log σ(s_i − s_j).
    "uniform" averages the terms; "delta" weighs each by its signal gap signal_i − signal_j (a clear win counts
    more than a narrow one), a weighted mean. "lambda" weighs each by LambdaRank's |ΔDCG| (Burges 2010, with the
    signal as linear gains): its gap times |1/log2(2 + r_i) − 1/log2(2 + r_j)|, r the 0-based ranks of the
    model's current (detached) scores, so pairs that would move the top of the ranking count most, as the top-1
    metric does; a weighted mean.

    Args:
        scores: [batch, n, n_tasks] the model's score of each candidate.
        signal: [batch, n, n_tasks] training signal, higher is better.
        min_delta: per task ([n_tasks]) or one for all: gaps at or below this are ties.
        weighting: "uniform", "delta" or "lambda".
    Returns:
        Scalar loss (0 with a zero gradient when no pair is decisive).

    Example: one instruction, one task, scores [2, 0, 1], signal [0.9, 0.5, 0.45], min_delta 0.1. Decisive
    pairs (0, 1) gap 0.4, margin 2 and (0, 2) gap 0.45, margin 1; (1, 2) is a tie. Uniform:
    (softplus(−2) + softplus(−1)) / 2 = (0.126928 + 0.313262) / 2 = 0.220095. Delta:
    (0.4 · 0.126928 + 0.45 · 0.313262) / 0.85 = 0.225573. Lambda: the scores rank candidates 0, 2, 1 first to
    last (discounts 1, 1/log2 3 = 0.630930, 1/log2 4 = 0.5 by rank), so (0, 1) weighs 0.4 · (1 − 0.5) = 0.2 and
    (0, 2) 0.45 · (1 − 0.630930) = 0.166082: (0.2 · 0.126928 + 0.166082 · 0.313262) / 0.366082 = 0.211463.
    """
    if weighting not in ALL_PAIRS_WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r}; choose one of {list(ALL_PAIRS_WEIGHTINGS)}")
    threshold = torch.as_tensor(min_delta, dtype=signal.dtype, device=signal.device)
    # [batch, i, j, task]: how much better candidate i is than j, and the model's margin for it.
    gaps = signal.unsqueeze(2) - signal.unsqueeze(1)
    margins = scores.unsqueeze(2) - scores.unsqueeze(1)
    decisive = gaps > threshold
    if not decisive.any():
        return scores.sum() * 0.0
    terms = F.softplus(-margins[decisive])
    if weighting == "uniform":
        return terms.mean()
    weights = gaps
    if weighting == "lambda":
        # Rank of each candidate under the current scores, per instruction and task (0 = the pick).
        ranks = scores.detach().argsort(dim=1, descending=True).argsort(dim=1).to(gaps.dtype)
        discounts = 1.0 / torch.log2(ranks + 2.0)
        weights = gaps * (discounts.unsqueeze(2) - discounts.unsqueeze(1)).abs()
    weights = weights[decisive].to(terms.dtype)
    return (weights * terms).sum() / weights.sum()


ALL_PAIRS_WEIGHTINGS = ("uniform", "delta", "lambda")


def listnet_loss(scores: Tensor, signal: Tensor, temperature: float = 0.1) -> Tensor:
    """ListNet's top-one cross-entropy (Cao et al. 2007): softmax(signal / temperature) over an instruction's
    candidates is the target distribution, softmax(scores) the model's; averaged over instructions and tasks.

    Args:
        scores: [batch, n, n_tasks].
        signal: [batch, n, n_tasks], higher is better.
        temperature: how sharply the target favours the best candidates (signal units).
    Returns:
        Scalar loss.

    Example: scores [0, 0], signal [1, 0], temperature 1: target [0.731059, 0.268941], model [0.5, 0.5], loss
    −(0.731059 + 0.268941) · log 0.5 = 0.693147; scores [1, 0] give 0.731059 · 0.313262 + 0.268941 · 1.313262
    = 0.582203.
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}; it must be above 0")
    target = torch.softmax(signal.float() / temperature, dim=1)
    return -(target * torch.log_softmax(scores.float(), dim=1)).sum(dim=1).mean()


def bradley_terry_loss(scores: Tensor, signal: Tensor, temperature: float = 1.0) -> Tensor:
    """BCE of every pair's σ(s_i − s_j) against the soft target σ((signal_i − signal_j) / temperature).

    With gpt4_pref under the logit transform and temperature 1 this is a Bradley-Terry fit to the judge: each
    gpt4_pref is P(candidate beats the reference), so under Bradley-Terry logit(p_i) = u_i − u_reference and
    P(i beats j) = σ(logit p_i − logit p_j); the scores learn the utilities up to a constant per instruction.
    Unlike the all-pairs logistic loss no pair is a tie: a narrow gap asks for a narrow margin, not for none.

    Args:
        scores: [batch, n, n_tasks].
        signal: [batch, n, n_tasks], higher is better.
        temperature: signal units per unit of score margin.
    Returns:
        Scalar loss: the mean over instructions, tasks and unordered pairs (0 with a zero gradient for n < 2).

    Example: scores [1, 0], signal [2, 0], temperature 2: target σ(1) = 0.731059, margin 1, loss
    0.731059 · softplus(−1) + 0.268941 · softplus(1) = 0.731059 · 0.313262 + 0.268941 · 1.313262 = 0.582203.
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}; it must be above 0")
    n = scores.shape[1]
    first, second = torch.triu_indices(n, n, offset=1, device=scores.device)
    if first.numel() == 0:
        return scores.sum() * 0.0
    scores, signal = scores.float(), signal.float()
    margins = scores[:, first] - scores[:, second]
    targets = torch.sigmoid((signal[:, first] - signal[:, second]) / temperature)
    return F.binary_cross_entropy_with_logits(margins, targets)
