"""The ranking table: how good is the candidate each method picks, judged by an oracle.

Rows: each candidate model alone, Random (expected value), Longest, Oracle, and any ranker under each
aggregation. Columns: mean oracle score of the pick, GPT-Rank (mean oracle rank of the pick, 1 = best,
ties share the better rank), Top-1 %, Top-3 %, % of instructions where the pick is at least as good as
the best single model's answer, and Pearson / Spearman / footrule of the full ranking against the oracle's,
each with a 95% bootstrap interval over instructions (resamples shared by every row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from blender.metrics.correlation import rank_correlations, within_instruction_spearman
from blender.metrics.gpt_rank import competition_ranks, scores_from_cmp_results
from blender.records.schema import Record, RecordError

HEADLINE = ("top1_oracle", "gpt_rank", "top1_pct", "top3_pct", "ge_best_pct")


def oracle_scores(record: Record, oracle: str) -> np.ndarray:
    """The oracle's score of each candidate: a stored score name, or "cmp_results" (the judge's labels)."""
    if oracle == "cmp_results":
        if record.cmp_results is None:
            raise RecordError(f"record {record.id!r} has no cmp_results to use as the oracle")
        return scores_from_cmp_results(record.cmp_results, record.models)
    missing = [c.model for c in record.candidates if oracle not in c.scores]
    if missing:
        raise RecordError(f"record {record.id!r}: candidates {missing} have no score {oracle!r} (the oracle)")
    return np.array([c.scores[oracle] for c in record.candidates])


@dataclass
class Method:
    """One row's way of choosing: a pick per example, or full scores (the pick is their argmax).

    Attributes:
        name: the row label.
        scores: per example, [n] scores (higher is better); gives the pick and the ranking correlations.
        picks: per example, the chosen candidate, when there is no full ranking (a single model).
        expected: True for Random: every quantity is its expectation over a uniform pick.
        forward_passes: model forward passes per instruction (None where no model runs).
        seconds: wall seconds per instruction (None where not measured).
    """

    name: str
    scores: Sequence[np.ndarray] | None = None
    picks: Sequence[int] | None = None
    expected: bool = False
    forward_passes: float | None = None
    seconds: float | None = None
    notes: dict = field(default_factory=dict)


def model_means(records: Sequence[Record], oracle: str) -> dict[str, float]:
    """Each model's mean oracle score over the records that have it, best first."""
    totals: dict[str, list[float]] = {}
    for record in records:
        for model, score in zip(record.models, oracle_scores(record, oracle), strict=True):
            totals.setdefault(model, []).append(float(score))
    means = {m: float(np.mean(v)) for m, v in totals.items()}
    return dict(sorted(means.items(), key=lambda item: -item[1]))


def best_model_on(records: Sequence[Record], oracle: str) -> str:
    """The single model with the highest mean oracle score (pick it on train, report it on val)."""
    return next(iter(model_means(records, oracle)))


def longest_scores(record: Record) -> np.ndarray:
    """Length in characters: the judge's strongest bias, and a baseline any ranker must beat."""
    return np.array([len(c.text) for c in record.candidates], dtype=float)


def bootstrap_indices(n_examples: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot, n_examples] resampled example indices, shared by every row so differences are paired."""
    return np.random.default_rng(seed).integers(0, n_examples, size=(n_boot, n_examples))


def interval(values: np.ndarray, indices: np.ndarray) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of per-example values."""
    means = values[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _column_correlations(predicted: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """Pearson per candidate column for each resample, averaged over the non-constant columns.

    Args:
        predicted: [n_boot, n_examples, n_candidates].
        oracle: the same shape.
    Returns:
        [n_boot] mean column correlation (nan where every column is constant).
    """
    x = predicted - predicted.mean(axis=1, keepdims=True)
    y = oracle - oracle.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    finite = np.isfinite(r)
    return np.where(
        finite.any(axis=1), np.where(finite, r, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1), np.nan
    )


def correlation_intervals(
    ranks: np.ndarray, oracle_ranks: np.ndarray, indices: np.ndarray
) -> dict[str, tuple]:
    """95% bootstrap intervals of Pearson, Spearman and footrule (as `rank_correlations`), over instructions.

    Each resample draws instructions with replacement and recomputes the column-wise statistics; Spearman of
    a column is the Pearson of its values re-ranked within the resample (ties share their mean rank).

    Args:
        ranks: [n_examples, n_candidates] predicted ranks, columns aligned by model.
        oracle_ranks: [n_examples, n_candidates] oracle ranks.
        indices: [n_boot, n_examples] resampled example indices (shared by every row).
    Returns:
        {"pearson_ci", "spearman_ci", "footrule_ci"}: (low, high) each.
    """
    predicted, oracle = ranks[indices].astype(float), oracle_ranks[indices].astype(float)
    pearson = _column_correlations(predicted, oracle)
    spearman = _column_correlations(rankdata(predicted, axis=1), rankdata(oracle, axis=1))
    footrule = np.abs(ranks - oracle_ranks).sum(axis=-1)

    def bounds(values: np.ndarray) -> tuple[float, float]:
        if np.isnan(values).all():  # every column constant in every resample: no correlation to bound
            return float("nan"), float("nan")
        low, high = np.nanpercentile(values, [2.5, 97.5])
        return float(low), float(high)

    return {
        "pearson_ci": bounds(pearson),
        "spearman_ci": bounds(spearman),
        "footrule_ci": interval(footrule, indices),
    }


def per_example(
    method: Method, records: Sequence[Record], oracle: str, best_model: str
) -> dict[str, np.ndarray]:
    """Each headline quantity per example for one method."""
    rows: dict[str, list[float]] = {k: [] for k in HEADLINE}
    for e, record in enumerate(records):
        truth = oracle_scores(record, oracle)
        ranks = competition_ranks(truth)
        best_score = truth[record.models.index(best_model)] if best_model in record.models else np.nan
        if method.expected:
            choices = np.arange(len(truth))
        elif method.scores is not None:
            choices = np.array([int(np.argmax(method.scores[e]))])
        else:
            choices = np.array([method.picks[e]])
        rows["top1_oracle"].append(truth[choices].mean())
        rows["gpt_rank"].append(ranks[choices].mean())
        rows["top1_pct"].append(100 * (ranks[choices] == 1).mean())
        rows["top3_pct"].append(100 * (ranks[choices] <= 3).mean())
        rows["ge_best_pct"].append(100 * (truth[choices] >= best_score).mean())
    return {k: np.asarray(v) for k, v in rows.items()}


def picks_by_model(scores: Sequence[np.ndarray], records: Sequence[Record]) -> dict[str, int]:
    """How many times a row that ranks (argmax of its scores) picks each model's answer.

    The headline says how good the picks are; this says whose they are, e.g. whether a ranker has learned
    a family of models but not which member of it is better (docs/results/pairranker.md)."""
    counts: dict[str, int] = {}
    for record, row_scores in zip(records, scores, strict=True):
        model = record.models[int(np.argmax(row_scores))]
        counts[model] = counts.get(model, 0) + 1
    return counts


def aligned_ranks(records: Sequence[Record], scores: Sequence[np.ndarray]) -> np.ndarray | None:
    """[n_examples, n_candidates] ranks with columns in the first record's model order (None if models differ)."""
    models = records[0].models
    if any(sorted(r.models) != sorted(models) for r in records):
        return None
    return np.stack(
        [
            competition_ranks(s)[[r.models.index(m) for m in models]]
            for r, s in zip(records, scores, strict=True)
        ]
    )


def ranking_table(
    records: Sequence[Record],
    oracle: str,
    best_model: str,
    methods: Sequence[Method],
    n_boot: int = 1000,
    seed: int = 0,
    compare_to: Sequence[str] = ("Longest",),
) -> dict:
    """Evaluate every method on the same examples, with bootstrap intervals.

    Args:
        records: the evaluation split.
        oracle: a score name or "cmp_results".
        best_model: the single model to compare against (chosen on train).
        methods: the rows.
        n_boot: bootstrap resamples (shared across rows, so differences are paired).
        seed: bootstrap seed.
        compare_to: rows against which every ranker row also gets a paired difference interval of
            the mean oracle score of its pick.
    Returns:
        {"rows": [...], "differences": [...]} ready for `report.render_*`.
    """
    indices = bootstrap_indices(len(records), n_boot, seed)
    truths = [oracle_scores(r, oracle) for r in records]
    oracle_rank_matrix = aligned_ranks(records, truths)
    rows, values_by_name = [], {}
    for method in methods:
        values = per_example(method, records, oracle, best_model)
        values_by_name[method.name] = values
        row = {"method": method.name, "n": len(records)}
        for key in HEADLINE:
            row[key] = float(values[key].mean())
            row[f"{key}_ci"] = interval(values[key], indices)
        if method.scores is not None and oracle_rank_matrix is not None:
            predicted = aligned_ranks(records, method.scores)
            if predicted is not None:
                row.update(rank_correlations(predicted, oracle_rank_matrix))
                row.update(correlation_intervals(predicted, oracle_rank_matrix, indices))
        if (
            method.scores is not None
        ):  # rows that rank; a fixed pick (one model's answer) has nothing to count
            row["spearman_within"] = within_instruction_spearman(list(method.scores), truths)
            row["picks_by_model"] = picks_by_model(method.scores, records)
        row["forward_passes"] = method.forward_passes
        row["seconds_per_instruction"] = method.seconds
        row.update(method.notes)
        rows.append(row)
    differences = []
    for method in methods:
        if method.forward_passes is None:
            continue
        for other in compare_to:
            if other not in values_by_name or other == method.name:
                continue
            diff = values_by_name[method.name]["top1_oracle"] - values_by_name[other]["top1_oracle"]
            low, high = interval(diff, indices)
            differences.append(
                {
                    "method": method.name,
                    "versus": other,
                    "top1_oracle_diff": float(diff.mean()),
                    "ci": (low, high),
                }
            )
    return {
        "oracle": oracle,
        "best_model": best_model,
        "n_examples": len(records),
        "rows": rows,
        "differences": differences,
        "model_means": model_means(records, oracle),
    }
