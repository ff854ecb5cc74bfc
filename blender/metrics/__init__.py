"""Metrics: GPT-Rank from judge labels, rank correlations, reference metrics and the LLM judge."""

from blender.metrics.gpt_rank import (
    CMP_LABELS,
    cmp_matrix,
    competition_ranks,
    ranks_from_cmp_results,
    scores_from_cmp_results,
)

__all__ = [
    "CMP_LABELS",
    "cmp_matrix",
    "competition_ranks",
    "ranks_from_cmp_results",
    "scores_from_cmp_results",
]
