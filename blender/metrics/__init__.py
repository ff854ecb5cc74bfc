"""Metrics: GPT-Rank from judge labels, rank correlations, reference metrics and the LLM judge."""

from blender.metrics.bartscore import BARTScore
from blender.metrics.base import MetricLoadError, ReferenceMetric, build_metrics
from blender.metrics.bertscore import BERTScore
from blender.metrics.bleurt import BLEURT
from blender.metrics.gpt_rank import (
    CMP_LABELS,
    cmp_matrix,
    competition_ranks,
    ranks_from_cmp_results,
    scores_from_cmp_results,
)
from blender.metrics.lexical import BLEU, ROUGE

__all__ = [
    "CMP_LABELS",
    "cmp_matrix",
    "competition_ranks",
    "ranks_from_cmp_results",
    "scores_from_cmp_results",
    "BARTScore",
    "BERTScore",
    "BLEU",
    "BLEURT",
    "MetricLoadError",
    "ROUGE",
    "ReferenceMetric",
    "build_metrics",
]
