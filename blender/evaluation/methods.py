"""The rows of a ranking table: the baselines (each model alone, Random, Longest, the Oracle) and a ranker's rows
(a pairwise ranker under each aggregation of its N×N matrix, a pointwise ranker's one row), in one table."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from torch import nn

from blender.aggregation import forward_passes, get_aggregation
from blender.distributed import map_sharded
from blender.evaluation.model_prior import ModelPrior, prior_method
from blender.evaluation.ranking import Method, longest_scores, oracle_scores, ranking_table
from blender.rankers.predict import InferenceSettings, full_matrices
from blender.rankers.registry import PointwiseRanker, kind_of
from blender.rankers.saved_scores import SavedPairLogits
from blender.records.schema import Record

log = logging.getLogger(__name__)


def baseline_methods(records: Sequence[Record], oracle: str) -> list[Method]:
    """Each candidate model alone, Random (expected value), Longest and the Oracle."""
    models = list(dict.fromkeys(m for r in records for m in r.models))
    methods = []
    for model in models:
        missing = [r.id for r in records if model not in r.models]
        if not missing:
            methods.append(Method(f"model: {model}", picks=[r.models.index(model) for r in records]))
        else:
            # Not a silent gap in the table: its row would compare it on fewer instructions than the others.
            log.warning(
                "model %s has no candidate in %d of %d records (first: %s): it gets no row of its own",
                model,
                len(missing),
                len(records),
                ", ".join(missing[:3]),
            )
    methods.append(Method("Random (expected)", expected=True))
    methods.append(Method("Longest", scores=[longest_scores(r) for r in records]))
    methods.append(Method(f"Oracle ({oracle})", scores=[oracle_scores(r, oracle) for r in records]))
    return methods


def ranker_methods(
    ranker: nn.Module,
    records: Sequence[Record],
    aggregations: Sequence[str],
    inference: InferenceSettings,
    name: str = "PairRanker",
    seed: int = 0,
    saved: SavedPairLogits | None = None,
) -> tuple[list[Method], list[np.ndarray]]:
    """Run the full matrix once (or take `saved`, this ranker's matrices of these records from an earlier
    evaluation, see `read_pair_logits`), then read every aggregation off it.

    Seconds per instruction are the full matrix's for MaxLogits and MaxWins; bubble's are scaled by its
    share of forward passes (it reads the same matrix, but run online it computes only those pairs).
    """
    if saved is not None:
        matrices, seconds = saved.matrices, saved.seconds_per_instruction
        log.info(
            "full matrix of %d records reused from an earlier evaluation of this checkpoint", len(records)
        )
    else:
        started = time.perf_counter()
        # Under a launched run each process runs its shard of the records; all get every matrix, in order.
        matrices = map_sharded(lambda part: full_matrices(ranker, part, inference), records)
        seconds = (time.perf_counter() - started) / len(records)
    n_candidates = int(np.mean([len(r.candidates) for r in records]))
    full = forward_passes("max_logits", n_candidates)
    methods = []
    for aggregation in aggregations:
        aggregate = get_aggregation(aggregation)
        scores = [
            aggregate(m, seed=seed + e) if aggregation == "bubble" else aggregate(m)
            for e, m in enumerate(matrices)
        ]
        passes = forward_passes(aggregation, n_candidates)
        methods.append(
            Method(
                f"{name} + {aggregation}",
                scores=scores,
                forward_passes=passes,
                seconds=None if seconds is None else seconds * passes / full,
            )
        )
    if seconds:
        log.info("full matrix: %.2f s per instruction, %.1f pairs/s", seconds, full / seconds)
    return methods, matrices


def pointwise_method(
    ranker: PointwiseRanker, records: Sequence[Record], inference: InferenceSettings, name: str | None = None
) -> Method:
    """A pointwise ranker's row: its N scores per instruction, the forward passes it ran and the wall time."""
    started = time.perf_counter()
    scores = map_sharded(lambda part: ranker.score_records(part, inference), records)
    seconds = (time.perf_counter() - started) / len(records)
    passes = float(np.mean([ranker.forward_passes(r) for r in records]))
    log.info("%s: %.2f s per instruction, %.0f forward passes each", ranker.label, seconds, passes)
    return Method(name or ranker.label, scores=scores, forward_passes=passes, seconds=seconds)


def evaluate_ranker(
    ranker: nn.Module,
    records: Sequence[Record],
    best_model: str,
    oracle: str,
    aggregations: Sequence[str] = ("max_logits", "max_wins", "bubble"),
    inference: InferenceSettings | None = None,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict:
    """The ranking table of `ranker` on `records`, with `best_model` (chosen on train) as the bar to clear."""
    table, _, _, _ = evaluate_ranker_with_methods(
        ranker, records, best_model, oracle, aggregations, inference, bootstrap_samples, seed
    )
    return table


def evaluate_ranker_with_methods(
    ranker: nn.Module,
    records: Sequence[Record],
    best_model: str,
    oracle: str,
    aggregations: Sequence[str] = ("max_logits", "max_wins", "bubble"),
    inference: InferenceSettings | None = None,
    bootstrap_samples: int = 1000,
    seed: int = 0,
    saved_logits: SavedPairLogits | None = None,
    prior_train: Sequence[Record] | None = None,
    prior_folds: int = 2,
    prior_train_oracle: str | None = None,
) -> tuple[dict, list[Method], list[np.ndarray], ModelPrior | None]:
    """As `evaluate_ranker`, also returning the ranker's rows (one per aggregation), so other tables
    (Table 2 / Table 3) reuse its scores without running the model again, the N×N logit matrices
    (None for a pointwise ranker, whose one row needs no aggregation) and the model prior. `saved_logits`
    stands in for the PairRanker's full matrix (see `ranker_methods`). With `prior_train`, the row of the
    ranker's first score (MaxLogits, or the pointwise row) plus the model prior fitted on it is added
    (`blender.evaluation.model_prior`)."""
    methods = baseline_methods(records, oracle)
    if kind_of(ranker).pairwise:
        rankers, matrices = ranker_methods(
            ranker, records, aggregations, inference or InferenceSettings(), seed=seed, saved=saved_logits
        )
    else:
        rankers, matrices = [pointwise_method(ranker, records, inference or InferenceSettings())], None
    prior = None
    if prior_train is not None:
        row, prior = prior_method(
            rankers[0], records, prior_train, oracle, prior_folds, seed, prior_train_oracle
        )
        rankers.append(row)
    compare_to = ["Longest", f"model: {best_model}"]
    table = ranking_table(
        records, oracle, best_model, [*methods, *rankers], bootstrap_samples, seed, compare_to
    )
    return table, rankers, matrices, prior
