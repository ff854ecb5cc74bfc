"""The paper's two result tables, computed on our data (PAPER.md §1, §2, §5 "Metric definitions").

Table 2 (main results): for each row (each LLM alone, the Oracle by each reference metric and by the judge,
Random, Longest, each ranker, later the fuser) the mean of each reference metric on the picked answer,
GPT-Rank (mean oracle rank of the pick, 1 = best, competition ranks), "≥ <named model> %" (share of
instructions where the pick's oracle score is at least the named model's; ties count as ≥, which the paper
does not state) and Top-3 % (share where the pick's oracle rank is ≤ 3), with 95% bootstrap intervals
over instructions, shared by every row.

Table 3 (correlation with the oracle): each reference metric used as a ranker, Random and each ranker;
Pearson and Spearman per candidate column then averaged, and Spearman's footrule, as the paper's
`cor_eval.py` (`rank_correlations`), plus the within-instruction Spearman.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from blender.evaluation.ranking import (
    Method,
    aligned_ranks,
    bootstrap_indices,
    interval,
    longest_scores,
    oracle_scores,
)
from blender.metrics.correlation import rank_correlations, within_instruction_spearman
from blender.metrics.gpt_rank import competition_ranks
from blender.records.schema import Record

# Reference metrics in the paper's column order, then the lexical ones; display names as the paper prints them.
METRIC_TITLES = {
    "bertscore": "BERTScore",
    "bartscore": "BARTScore",
    "bleurt": "BLEURT",
    "bleu": "BLEU",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
}
# The paper prints BERTScore F1 ×100; the others as they are.
METRIC_SCALES = {"bertscore": 100.0}
CATEGORIES = ("LLMs", "Analysis", "Baselines", "Rankers", "LLM-Blender")


@cache
def paper_results() -> dict[str, Any]:
    """The paper's published Table 2, Table 3 and Fig. 1 numbers, with their source (stored once, as data)."""
    text = resources.files("blender.evaluation").joinpath("paper_results.json").read_text(encoding="utf-8")
    return json.loads(text)


def available_metrics(records: Sequence[Record], keys: Sequence[str] = tuple(METRIC_TITLES)) -> list[str]:
    """The reference metrics (among `keys`) that every candidate of every record carries, in `keys` order."""
    return [k for k in keys if all(k in c.scores for r in records for c in r.candidates)]


def metric_title(key: str) -> str:
    title = METRIC_TITLES.get(key, key)
    return f"{title} (×{METRIC_SCALES[key]:g})" if key in METRIC_SCALES else title


def model_ranking(records: Sequence[Record], oracle: str) -> list[str]:
    """Models present in every record, best first by mean oracle score."""
    models = [m for m in records[0].models if all(m in r.models for r in records)]
    totals = {m: [] for m in models}
    for record in records:
        for model, score in zip(record.models, oracle_scores(record, oracle), strict=True):
            if model in totals:
                totals[model].append(score)
    return sorted(models, key=lambda m: -float(np.mean(totals[m])))


def named_models_for(records: Sequence[Record], oracle: str, dataset: str, count: int = 2) -> list[str]:
    """The models the "≥ model %" columns compare against: the paper's Vicuna and Open Assistant on
    MixInstruct, elsewhere the `count` best single models by mean oracle score on `records` (pass train)."""
    if dataset == "mixinstruct":
        paper = paper_results()
        named = [paper["models"][name] for name in paper["table2"]["named_models"].values()]
        if all(m in r.models for m in named for r in records):
            return named
    return model_ranking(records, oracle)[:count]


def best_shares(records: Sequence[Record], oracle: str) -> dict[str, float]:
    """% of instructions where each model's answer is best by the oracle (ties count for each), as Fig. 1."""
    models = model_ranking(records, oracle)
    counts = dict.fromkeys(models, 0)
    for record in records:
        truth = oracle_scores(record, oracle)
        for model, score in zip(record.models, truth, strict=True):
            if model in counts and score == truth.max():
                counts[model] += 1
    return {m: 100 * counts[m] / len(records) for m in sorted(models, key=lambda m: -counts[m])}


def table2_methods(records: Sequence[Record], oracle: str, metrics: Sequence[str]) -> list[Method]:
    """The rows every Table 2 has: each LLM, the Oracle by each metric and by `oracle`, Random, Longest."""
    methods = [
        Method(model, picks=[r.models.index(model) for r in records], notes={"category": "LLMs"})
        for model in model_ranking(records, oracle)
    ]
    for key in dict.fromkeys([*metrics, oracle]):
        scores = [oracle_scores(r, key) for r in records]  # a stored score, or the judge's labels
        methods.append(Method(f"Oracle ({key})", scores=scores, notes={"category": "Analysis"}))
    methods.append(Method("Random", expected=True, notes={"category": "Baselines"}))
    methods.append(
        Method("Longest", scores=[longest_scores(r) for r in records], notes={"category": "Baselines"})
    )
    return methods


def _choices(method: Method, e: int, n_candidates: int) -> np.ndarray:
    # Same choice rule as ranking.per_example: Random averages over every candidate.
    if method.expected:
        return np.arange(n_candidates)
    if method.scores is not None:
        return np.array([int(np.argmax(method.scores[e]))])
    return np.array([method.picks[e]])


def _ge_key(model: str) -> str:
    return f"ge:{model}"


def table2(
    records: Sequence[Record],
    oracle: str,
    methods: Sequence[Method],
    metrics: Sequence[str],
    named_models: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    extra_outputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Table 2 on `records`, one row per method, with bootstrap intervals shared across rows.

    Args:
        records: the evaluation split.
        oracle: what GPT-Rank, Top-3 and "≥ model" are judged by: a score name or "cmp_results".
        methods: the rows (`table2_methods` plus rankers); `notes["category"]` groups them.
        metrics: reference-metric score names to average on the pick (see `available_metrics`).
        named_models: models for the "≥ model %" columns (the paper: Vicuna, Open Assistant).
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
        extra_outputs: {row name: record field} of extra answers scored by the scoring job (e.g. a fused
            answer under "fused", scores in `record.extra["fused_scores"]`); they get metric columns, and
            GPT-Rank / Top-1 / Top-3 where every record has `extra["<field>_gpt_rank"]` (a judge's placement).
    Returns:
        {"oracle", "metrics", "named_models", "n_examples", "rows": [{"method", "category", <key>, <key>_ci}]}.
        Keys: each metric, "gpt_rank", "top1_pct", "top3_pct", "ge:<model>"; a missing value is None.
        "best_share_pct": {model: % of instructions where it is best} (Fig. 1).
    """
    indices = bootstrap_indices(len(records), n_boot, seed)
    truths = [oracle_scores(r, oracle) for r in records]
    ranks = [competition_ranks(t) for t in truths]
    metric_values = {m: [np.array([c.scores[m] for c in r.candidates]) for r in records] for m in metrics}
    named = [m for m in named_models if all(m in r.models for r in records)]
    rows = []
    for method in methods:
        values: dict[str, list[float]] = {k: [] for k in [*metrics, "gpt_rank", "top1_pct", "top3_pct"]}
        values.update({_ge_key(m): [] for m in named})
        for e, record in enumerate(records):
            picked = _choices(method, e, len(record.candidates))
            for m in metrics:
                values[m].append(metric_values[m][e][picked].mean())
            values["gpt_rank"].append(ranks[e][picked].mean())
            values["top1_pct"].append(100 * (ranks[e][picked] == 1).mean())
            values["top3_pct"].append(100 * (ranks[e][picked] <= 3).mean())
            for m in named:
                bar = truths[e][record.models.index(m)]
                values[_ge_key(m)].append(100 * (truths[e][picked] >= bar).mean())
        row = _summarise(method.name, method.notes.get("category", "Rankers"), values, indices)
        for m in named:
            if method.name == m:  # a model against itself: N/A, as the paper prints it
                row[_ge_key(m)] = row[f"{_ge_key(m)}_ci"] = None
        rows.append(row)
    # LLMs best first by GPT-Rank, as the paper orders them; the other rows keep their order.
    rows = sorted((r for r in rows if r["category"] == "LLMs"), key=lambda r: r["gpt_rank"]) + [
        r for r in rows if r["category"] != "LLMs"
    ]
    for name, field in (extra_outputs or {}).items():
        values = {m: [r.extra[f"{field}_scores"][m] for r in records] for m in metrics}
        if all(f"{field}_gpt_rank" in r.extra for r in records):
            # Placed among the candidates by a judge (blender.fuser.fused.judge_fused).
            placed = np.array([r.extra[f"{field}_gpt_rank"] for r in records], dtype=float)
            values.update(
                gpt_rank=list(placed), top1_pct=list(100 * (placed == 1)), top3_pct=list(100 * (placed <= 3))
            )
        rows.append(_summarise(name, "LLM-Blender", values, indices))
    return {
        "oracle": oracle,
        "metrics": list(metrics),
        "named_models": named,
        "n_examples": len(records),
        "rows": rows,
        "best_share_pct": best_shares(records, oracle),
    }


def _summarise(
    name: str, category: str, values: Mapping[str, list[float]], indices: np.ndarray
) -> dict[str, Any]:
    row: dict[str, Any] = {"method": name, "category": category}
    for key, per_example in values.items():
        array = np.asarray(per_example, dtype=float)
        row[key] = float(array.mean())
        row[f"{key}_ci"] = interval(array, indices)
    return row


def table3(
    records: Sequence[Record],
    oracle: str,
    metrics: Sequence[str],
    methods: Sequence[Method] = (),
    n_random: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Table 3: how well each reference metric and each ranker orders the candidates like the oracle.

    Args:
        records: the evaluation split; every record must hold the same models (columns are per model).
        oracle: a score name or "cmp_results".
        metrics: reference-metric score names, each used as a ranker.
        methods: rankers with full scores (rows without scores, e.g. single models, are skipped).
        n_random: Random's row is the mean over this many draws of uniform random scores.
        seed: seed of those draws.
    Returns:
        {"oracle", "n_examples", "rows": [{"method", "category", "pearson", "spearman", "footrule",
        "spearman_within"}]}; Pearson and Spearman in [-1, 1] (the paper prints them ×100).
    """
    truths = [oracle_scores(r, oracle) for r in records]
    oracle_ranks = aligned_ranks(records, truths)
    if oracle_ranks is None:
        raise ValueError(
            "Table 3 correlates per model column: every record must hold the same candidate models"
        )
    rng = np.random.default_rng(seed)
    draws = [
        _correlations(
            "Random",
            "Baselines",
            [rng.random(len(r.candidates)) for r in records],
            records,
            truths,
            oracle_ranks,
        )
        for _ in range(n_random)
    ]
    random_row = {"method": "Random", "category": "Baselines", "draws": n_random}
    for key in ("pearson", "spearman", "footrule", "spearman_within"):
        random_row[key] = float(np.mean([d[key] for d in draws]))
    rows = [random_row]
    for key in metrics:
        scores = [np.array([c.scores[key] for c in r.candidates]) for r in records]
        rows.append(_correlations(key, "Reference metrics", scores, records, truths, oracle_ranks))
    for method in methods:
        if method.scores is not None and not method.name.startswith("Oracle"):
            category = method.notes.get("category", "Rankers")
            rows.append(_correlations(method.name, category, method.scores, records, truths, oracle_ranks))
    return {"oracle": oracle, "n_examples": len(records), "rows": rows}


def _correlations(
    name: str,
    category: str,
    scores: Sequence[np.ndarray],
    records: Sequence[Record],
    truths: Sequence[np.ndarray],
    oracle_ranks: np.ndarray,
) -> dict[str, Any]:
    row: dict[str, Any] = {"method": name, "category": category}
    row.update(rank_correlations(aligned_ranks(records, scores), oracle_ranks))
    row["spearman_within"] = within_instruction_spearman(list(scores), list(truths))
    return row


def paper_row_name(method: str, paper: Mapping[str, Any]) -> str | None:
    """The paper's name for one of our rows ("vicuna-13b-1.1" -> "Vicuna", "Oracle (cmp_results)" ->
    "Oracle (GPT-Rank)", "bleu" -> "BLEU", "PairRanker + max_logits" -> "PairRanker"), or None."""
    by_model = {model: name for name, model in paper["models"].items()}
    metric_names = paper["metric_names"]
    if method in by_model:
        return by_model[method]
    if method in metric_names:
        return metric_names[method]
    if method.startswith("Oracle (") and method.endswith(")"):
        key = method[len("Oracle (") : -1]
        if key == "cmp_results":
            return "Oracle (GPT-Rank)"
        return f"Oracle ({metric_names[key]})" if key in metric_names else None
    # The paper's PairRanker ran the full matrix at test time, aggregated by max logits (PAPER.md §4a).
    # Pointwise baselines have one row each, named as the paper's.
    return {
        "Random": "Random",
        "PairRanker + max_logits": "PairRanker",
        "SummaReranker": "SummaReranker",
        "SimCLS": "SimCLS",
        "MLM-Scoring": "MLM-Scoring",
    }.get(method)


__all__ = [
    "CATEGORIES",
    "METRIC_SCALES",
    "METRIC_TITLES",
    "available_metrics",
    "best_shares",
    "metric_title",
    "model_ranking",
    "named_models_for",
    "paper_results",
    "paper_row_name",
    "table2",
    "table2_methods",
    "table3",
]
