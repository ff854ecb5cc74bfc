"""Metrics: reference metrics against the reference answer (BERTScore, BLEURT, BARTScore, BLEU, ROUGE, built by
name from `conf/metrics/`), the resumable scoring job, GPT-Rank from pairwise labels, rank correlations, and the
LLM judge (an OpenAI-compatible client, its prompt and its cache)."""

from blender.metrics.bartscore import BARTScore
from blender.metrics.base import MetricLoadError, ReferenceMetric, build_metrics
from blender.metrics.bertscore import BERTScore
from blender.metrics.bleurt import BLEURT
from blender.metrics.correlation import rank_correlations, within_instruction_spearman
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
from blender.metrics.lexical import BLEU, ROUGE

__all__ = [
    "BARTScore",
    "BERTScore",
    "BLEU",
    "BLEURT",
    "CMP_LABELS",
    "JudgeError",
    "JudgeSettings",
    "JudgeTally",
    "MetricLoadError",
    "PAPER_PROMPT_TEMPLATE",
    "PAPER_SYSTEM_PROMPT",
    "PairwiseJudge",
    "ROUGE",
    "ReferenceMetric",
    "build_metrics",
    "cmp_matrix",
    "combine_verdicts",
    "competition_ranks",
    "deduplicate_string",
    "gpt_ranks",
    "judge_split",
    "mean_gpt_rank_by_model",
    "parse_label",
    "rank_correlations",
    "ranks_from_cmp_results",
    "scores_from_cmp_results",
    "within_instruction_spearman",
]
