"""Rank correlation with an oracle ranking, computed as the paper's `cor_eval.py` (PAPER.md §2).

Inputs are rank matrices [n_examples, n_candidates] with columns aligned by candidate (model). Pearson and
Spearman are computed per candidate column across examples, then averaged over columns; Spearman's
footrule is Σ_candidates |rank − oracle rank| per example, averaged over examples.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.stats import spearmanr

log = logging.getLogger(__name__)


def _column_mean(values: list[float], what: str) -> float:
    finite = [v for v in values if np.isfinite(v)]
    if len(finite) < len(values):
        # A column whose ranks never vary (e.g. a model always ranked last) has no correlation.
        log.debug(
            "%s: %d of %d candidate columns are constant and left out",
            what,
            len(values) - len(finite),
            len(values),
        )
    return float(np.mean(finite)) if finite else float("nan")


def rank_correlations(ranks: np.ndarray, oracle_ranks: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and footrule of predicted ranks against oracle ranks.

    Args:
        ranks: [n_examples, n_candidates] predicted ranks (1 = best).
        oracle_ranks: [n_examples, n_candidates] oracle ranks, same column order.
    Returns:
        {"pearson", "spearman", "footrule"}: the first two in [−1, 1] (the paper prints them ×100).
    """
    ranks = np.asarray(ranks, dtype=float)
    oracle_ranks = np.asarray(oracle_ranks, dtype=float)
    if ranks.shape != oracle_ranks.shape or ranks.ndim != 2:
        raise ValueError(f"rank matrices must share a 2-D shape, got {ranks.shape} and {oracle_ranks.shape}")
    pearson, spearman = [], []
    with warnings.catch_warnings():
        # Constant columns give nan with a warning; they are counted out above, on purpose.
        warnings.simplefilter("ignore")
        for k in range(ranks.shape[1]):
            pearson.append(float(np.corrcoef(ranks[:, k], oracle_ranks[:, k])[0, 1]))
            spearman.append(float(spearmanr(ranks[:, k], oracle_ranks[:, k]).statistic))
    return {
        "pearson": _column_mean(pearson, "pearson"),
        "spearman": _column_mean(spearman, "spearman"),
        "footrule": float(np.abs(ranks - oracle_ranks).sum(axis=-1).mean()),
    }


def within_instruction_spearman(scores: list[np.ndarray], oracle_scores: list[np.ndarray]) -> float:
    """Spearman between predicted and oracle scores inside each instruction, averaged over instructions.

    Not the paper's statistic (that one correlates each candidate column across instructions) but the
    one that asks "does the ranker order this instruction's candidates like the oracle": it is what the
    issue's reference figures for alpaca_blend report. Instructions whose scores are all tied are left out.
    """
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs give nan, counted out below
        for predicted, truth in zip(scores, oracle_scores, strict=True):
            values.append(float(spearmanr(predicted, truth).statistic))
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
