"""Metrics: GPT-Rank from judge labels, rank correlations, reference metrics and the LLM judge."""

from blender.metrics.correlation import rank_correlations
from blender.metrics.gpt_rank import (
    CMP_LABELS,
    cmp_matrix,
    competition_ranks,
    ranks_from_cmp_results,
    scores_from_cmp_results,
)
from blender.metrics.judge import (
    JudgeError,
    JudgeSettings,
    JudgeTally,
    PairwiseJudge,
    gpt_ranks,
    judge_split,
    mean_gpt_rank_by_model,
)
from blender.metrics.judge_prompt import (
    PAPER_PROMPT_TEMPLATE,
    PAPER_SYSTEM_PROMPT,
    combine_verdicts,
    deduplicate_string,
    parse_label,
)

__all__ = [
    "CMP_LABELS",
    "PAPER_PROMPT_TEMPLATE",
    "PAPER_SYSTEM_PROMPT",
    "JudgeError",
    "JudgeSettings",
    "JudgeTally",
    "PairwiseJudge",
    "cmp_matrix",
    "combine_verdicts",
    "competition_ranks",
    "deduplicate_string",
    "gpt_ranks",
    "judge_split",
    "mean_gpt_rank_by_model",
    "parse_label",
    "ranks_from_cmp_results",
    "rank_correlations",
    "scores_from_cmp_results",
]
