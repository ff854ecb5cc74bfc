"""Evaluation: the rows of a ranking table (`methods`), the table with its bootstrap intervals (`ranking`), the
paper's Table 2 / Table 3 (`paper_tables`, rendered and plotted by `paper_report`), the comparison of
experiments (`compare`), and the reports `make eval` writes for a checkpoint (`reporting`)."""

from blender.evaluation.methods import (
    baseline_methods,
    evaluate_ranker,
    evaluate_ranker_with_methods,
    pointwise_method,
    ranker_methods,
)
from blender.evaluation.paper_report import (
    render_table2,
    render_table3,
    report_paper_tables,
    write_paper_tables,
)
from blender.evaluation.paper_tables import (
    available_metrics,
    named_models_for,
    paper_results,
    table2,
    table2_methods,
    table3,
)
from blender.evaluation.ranking import Method, best_model_on, longest_scores, oracle_scores, ranking_table
from blender.evaluation.report import print_table, render_markdown, write_report

__all__ = [
    "Method",
    "available_metrics",
    "baseline_methods",
    "best_model_on",
    "evaluate_ranker",
    "evaluate_ranker_with_methods",
    "longest_scores",
    "named_models_for",
    "oracle_scores",
    "paper_results",
    "pointwise_method",
    "print_table",
    "ranker_methods",
    "ranking_table",
    "render_markdown",
    "render_table2",
    "render_table3",
    "report_paper_tables",
    "table2",
    "table2_methods",
    "table3",
    "write_paper_tables",
    "write_report",
]
