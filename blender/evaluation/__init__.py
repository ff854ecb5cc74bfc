"""Evaluation: the ranking table (baselines, oracle, rankers), its bootstrap intervals and reports."""

from blender.evaluation.evaluate import baseline_methods, evaluate_ranker, ranker_methods
from blender.evaluation.ranking import Method, best_model_on, longest_scores, oracle_scores, ranking_table
from blender.evaluation.report import print_table, render_markdown, write_report

__all__ = [
    "Method",
    "baseline_methods",
    "best_model_on",
    "evaluate_ranker",
    "longest_scores",
    "oracle_scores",
    "print_table",
    "ranker_methods",
    "ranking_table",
    "render_markdown",
    "write_report",
]
