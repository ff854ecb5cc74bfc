"""Train any ranker kind through the one loop, validating each epoch by the oracle score of its pick.

The kind (`blender.rankers.registry`) supplies the epoch's batches and the loss; this module supplies what every
kind shares: the validation that picks the best checkpoint (a pairwise ranker's bubble run or full matrix, a
pointwise ranker's N scores), saving, and the call to `fit`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from blender.aggregation import get_aggregation
from blender.distributed import map_sharded
from blender.evaluation.preference import correct, preference_margins
from blender.evaluation.ranking import HEADLINE, Method, oracle_scores, per_example
from blender.metrics.correlation import within_instruction_spearman
from blender.rankers.predict import InferenceSettings, bubble_scores_online, full_matrices
from blender.rankers.registry import RankerKind, kind_of
from blender.records import Record
from blender.records.preference import is_preference_record
from blender.training.loop import LoggerSettings, TrainSettings, fit

log = logging.getLogger(__name__)

VAL_MODES = ("bubble", "full")


def validate_ranker(
    ranker: nn.Module,
    records: Sequence[Record],
    oracle: str,
    best_model: str,
    inference: InferenceSettings,
    mode: str = "bubble",
    seed: int = 0,
    kind: RankerKind | None = None,
) -> dict[str, float]:
    """Validation metrics of the ranker's pick, named like "val/top1_oracle".

    A pairwise ranker runs `mode` "bubble" (2(N−1) passes, as the original's training-time eval) or "full"
    (N(N−1) passes, MaxLogits, plus the within-instruction Spearman); a pointwise one scores every candidate.
    """
    started = time.perf_counter()
    kind = kind or kind_of(ranker)
    if records and all(is_preference_record(r) for r in records):
        # Preference pairs: one comparison each (both orders), whatever the mode. Pairwise accuracy is the
        # headline; it is also the pick's oracle score (1 for chosen, 0 for rejected), so the default
        # trainer.best_metric (val/top1_oracle) picks the same checkpoint.
        accuracy = float(correct(preference_margins(ranker, records, inference)).mean())  # sharded inside
        return {
            "val/pairwise_accuracy": accuracy,
            "val/top1_oracle": accuracy,
            "val/seconds": time.perf_counter() - started,
        }
    if mode not in VAL_MODES:
        raise ValueError(f"trainer.val_mode={mode!r}; choose one of {VAL_MODES}")
    # Each process of a launched run scores its contiguous shard; every process gets all scores back, in order.
    if not kind.pairwise:
        scores, mode = map_sharded(lambda part: ranker.score_records(part, inference), records), "full"
    elif mode == "bubble":
        counts = [len(r.candidates) for r in records]

        def bubble_shard(part: Sequence[tuple[int, Record]]) -> list[np.ndarray]:
            # A shard draws the starting orders the whole set would (`skip`: the records before it).
            first = part[0][0] if part else 0
            return bubble_scores_online(
                ranker, [r for _, r in part], inference, seed=seed, skip=counts[:first]
            )

        scores = map_sharded(bubble_shard, list(enumerate(records)))
    else:
        max_logits = get_aggregation("max_logits")
        scores = map_sharded(
            lambda part: [max_logits(m) for m in full_matrices(ranker, part, inference)], records
        )
    values = per_example(Method("ranker", scores=scores), records, oracle, best_model)
    metrics = {f"val/{k}": float(v.mean()) for k, v in values.items()}
    if mode == "full":
        metrics["val/spearman_within"] = within_instruction_spearman(
            scores, [oracle_scores(r, oracle) for r in records]
        )
    metrics["val/seconds"] = time.perf_counter() - started
    return metrics


def train_ranker(
    ranker: nn.Module,
    train_records: Sequence[Record],
    val_records: Sequence[Record],
    signals: Sequence[str],
    oracle: str,
    best_model: str,
    sampling: Any,
    settings: TrainSettings,
    output_dir: str | os.PathLike,
    inference: InferenceSettings | None = None,
    logger: LoggerSettings | None = None,
    run_config: dict[str, Any] | None = None,
    kind: RankerKind | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit `ranker` on `train_records`; keep the checkpoint whose val pick scores best.

    Args:
        sampling: the kind's `sampling` settings (how its training examples are drawn).
        kind: the ranker's kind; None: the registered kind of its class.
        fingerprint: the settings that shape the run (see `fit`): a resume under other ones is refused.
    Returns:
        The loop's summary (best value and epoch, history, final training loss).
    """
    kind = kind or kind_of(ranker)
    if not kind.trainable:
        raise ValueError(f"ranker kind {kind.name!r} has nothing to train")
    if not isinstance(sampling, kind.sampling):
        raise TypeError(f"a {kind.name} trains with {kind.sampling.__name__}, not {type(sampling).__name__}")
    inference = inference or InferenceSettings(show_progress=settings.show_progress)
    plan = kind.prepare_training(ranker, train_records, signals, sampling, settings.batch_size, settings.seed)
    log.info("%s", plan.description)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return validate_ranker(
            model, val_records, oracle, best_model, inference, settings.val_mode, settings.seed, kind
        )

    return fit(
        ranker,
        plan.loss,
        plan.epoch_batches,
        settings,
        output_dir,
        evaluate=evaluate if val_records else None,
        save_model=lambda model, directory: model.save(Path(directory)),
        new_parameter_prefixes=kind.new_parameter_prefixes,
        logger=logger,
        run_config=run_config,
        fingerprint=fingerprint,
        val_metrics=validation_metrics(kind, settings.val_mode),
    )


def validation_metrics(kind: RankerKind, mode: str) -> list[str]:
    """The names `validate_ranker` returns for this kind and mode (what `trainer.best_metric` may name)."""
    names = [f"val/{k}" for k in HEADLINE] + ["val/seconds", "val/pairwise_accuracy"]
    return names + ["val/spearman_within"] if (mode == "full" or not kind.pairwise) else names
