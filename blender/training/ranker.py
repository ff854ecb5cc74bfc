"""Train a PairRanker: sample pairs per epoch, batch them by length, validate by the pick's oracle score."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from blender.aggregation import get_aggregation
from blender.data.pairs import PAIR_WEIGHTINGS, Pair, per_signal, sample_pairs, signal_matrix
from blender.data.schema import Record
from blender.evaluation.ranking import Method, oracle_scores, per_example
from blender.metrics.correlation import within_instruction_spearman
from blender.rankers.losses import absolute_target_loss, pairwise_logistic_loss
from blender.rankers.pairranker import PairRanker
from blender.rankers.predict import InferenceSettings, bubble_scores_online, encode_records, full_matrices
from blender.training.loop import LoggerSettings, TrainSettings, fit

log = logging.getLogger(__name__)


@dataclass
class PairSampling:
    """How training pairs are drawn (`ranker.sampling` in config).

    Attributes:
        pairs_per_example: pairs per instruction per epoch (paper: 5).
        signal_transform: "none", "logit" or "rank" (see `signal_matrix`), or {signal: name}.
        min_delta: signal differences at or below this are ties (no loss); or {signal: threshold} (see
            `per_signal`), since signals trained on together live on different scales.
        skip_ties: do not spend forward passes on pairs tied on every task.
        weighting: "uniform" (paper), "top" (favour pairs that involve the instruction's best answers) or
            "contested" (favour pairs of two strong answers).
        absolute_weight: weight of an absolute-target term added to the pairwise loss: BCE of each
            candidate's score against its untransformed signal, which must then lie in [0, 1] (gpt4_pref
            does). 0 (the paper) trains on sign(Δ) alone. See `absolute_target_loss`.
    """

    pairs_per_example: int = 5
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.0
    skip_ties: bool = True
    weighting: str = "uniform"
    absolute_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.absolute_weight >= 0:
            raise ValueError(
                f"ranker.sampling.absolute_weight={self.absolute_weight!r}; it must be 0 or more"
            )
        if self.weighting not in PAIR_WEIGHTINGS:  # caught with the config, not at the first epoch
            raise ValueError(
                f"ranker.sampling.weighting={self.weighting!r}; choose one of {', '.join(PAIR_WEIGHTINGS)}"
            )


class PairBatches(Sequence):
    """One epoch's micro-batches: pairs grouped by length (less padding), collated on access."""

    def __init__(
        self,
        ranker: PairRanker,
        encoded: Sequence,
        pairs: Sequence[Pair],
        batch_size: int,
        seed: int,
        absolute: Sequence[np.ndarray] | None = None,
    ):
        """`absolute`: per record, its [n_candidates, n_tasks] absolute targets; each batch then carries
        `absolute_first` and `absolute_second` for `absolute_target_loss`."""
        rng = np.random.default_rng(seed)
        self.ranker, self.encoded, self.absolute = ranker, encoded, absolute
        sequences = [ranker.encoder.pair_ids(encoded[p.record_index], p.first, p.second) for p in pairs]
        order = rng.permutation(len(pairs))
        # HF's group_by_length: sort inside random mega-batches, then shuffle the batches.
        mega = batch_size * 16
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda k: len(sequences[k]))
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        self.batches = [batches[k] for k in rng.permutation(len(batches))]
        self.sequences, self.pairs = sequences, pairs

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        batch = self.ranker.encoder.pad([self.sequences[k] for k in rows])
        pairs = [self.pairs[k] for k in rows]
        batch["targets"] = torch.tensor([p.targets for p in pairs], dtype=torch.float32)
        if self.absolute is not None:
            for key, member in (("absolute_first", "first"), ("absolute_second", "second")):
                values = np.stack([self.absolute[p.record_index][getattr(p, member)] for p in pairs])
                batch[key] = torch.as_tensor(values, dtype=torch.float32)
        return batch


def ranker_loss(
    model: PairRanker, batch: dict[str, Tensor], absolute_weight: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """The pairwise logistic loss of a batch (plus `absolute_weight` × the absolute-target term), and the
    share of decisive pairs ordered right."""
    scores_first, scores_second = model(batch["input_ids"], batch["attention_mask"])
    targets = batch["targets"]
    loss = pairwise_logistic_loss(scores_first, scores_second, targets)
    decisive = targets != 0
    correct = ((scores_first - scores_second) * targets > 0)[decisive].float()
    logged = {"pair_accuracy": correct.mean().item() if correct.numel() else float("nan")}
    if absolute_weight:
        absolute = absolute_target_loss(
            torch.cat([scores_first, scores_second]).float(),
            torch.cat([batch["absolute_first"], batch["absolute_second"]]),
        )
        loss = loss + absolute_weight * absolute
        logged["absolute_loss"] = absolute.item()
    return loss, logged


def absolute_targets(records: Sequence[Record], signals: Sequence[str]) -> list[np.ndarray]:
    """Per record, its candidates' untransformed signals, checked to be probabilities (for the BCE)."""
    targets = [signal_matrix(r, signals, "none") for r in records]
    for record, values in zip(records, targets, strict=True):
        outside = (values < 0) | (values > 1) | np.isnan(values)
        if outside.any():
            i, t = np.argwhere(outside)[0]
            raise ValueError(
                f"ranker.sampling.absolute_weight needs signals in [0, 1]: record {record.id!r}, candidate "
                f"{record.candidates[i].model!r} has {signals[t]}={values[i, t]}; set absolute_weight=0 for "
                "this signal"
            )
    return targets


def validate_ranker(
    ranker: PairRanker,
    records: Sequence[Record],
    oracle: str,
    best_model: str,
    inference: InferenceSettings,
    mode: str = "bubble",
    seed: int = 0,
) -> dict[str, float]:
    """Validation metrics of the ranker's pick: "bubble" (2(N−1) passes, as the original's training-time
    eval) or "full" (N(N−1) passes, MaxLogits, plus the within-instruction Spearman)."""
    started = time.perf_counter()
    if mode == "bubble":
        scores = bubble_scores_online(ranker, records, inference, seed=seed)
    elif mode == "full":
        scores = [get_aggregation("max_logits")(m) for m in full_matrices(ranker, records, inference)]
    else:
        raise ValueError(f"validation mode {mode!r}; choose bubble or full")
    values = per_example(Method("ranker", scores=scores), records, oracle, best_model)
    metrics = {f"val/{k}": float(v.mean()) for k, v in values.items()}
    if mode == "full":
        metrics["val/spearman_within"] = within_instruction_spearman(
            scores, [oracle_scores(r, oracle) for r in records]
        )
    metrics["val/seconds"] = time.perf_counter() - started
    return metrics


def train_ranker(
    ranker: PairRanker,
    train_records: Sequence[Record],
    val_records: Sequence[Record],
    signals: Sequence[str],
    oracle: str,
    best_model: str,
    sampling: PairSampling,
    settings: TrainSettings,
    output_dir: str | os.PathLike,
    inference: InferenceSettings | None = None,
    val_mode: str = "bubble",
    logger: LoggerSettings | None = None,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit the ranker on pairs from `train_records`; keep the checkpoint whose val pick scores best.

    Returns:
        The loop's summary (best value and epoch, history, final training loss).
    """
    inference = inference or InferenceSettings(show_progress=settings.show_progress)
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in train_records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    encoded = encode_records(ranker, train_records)
    absolute = absolute_targets(train_records, signals) if sampling.absolute_weight else None

    @functools.lru_cache(
        maxsize=1
    )  # the loop asks for an epoch's batches more than once (counting, resuming)
    def epoch_batches(epoch: int) -> PairBatches:
        rng = np.random.default_rng(settings.seed + epoch)
        pairs = sample_pairs(
            signal_by_record,
            sampling.pairs_per_example,
            rng,
            min_delta,
            sampling.skip_ties,
            sampling.weighting,
        )
        return PairBatches(
            ranker, encoded, pairs, settings.batch_size, seed=settings.seed + epoch, absolute=absolute
        )

    first = epoch_batches(0)
    n_decisive = sum(any(t != 0 for t in first.pairs[k].targets) for k in range(len(first.pairs)))
    log.info(
        "%d training pairs per epoch (%d decisive) in %d batches of %d",
        len(first.pairs),
        n_decisive,
        len(first),
        settings.batch_size,
    )

    def evaluate(model: PairRanker) -> dict[str, float]:
        return validate_ranker(
            model, val_records, oracle, best_model, inference, val_mode, seed=settings.seed
        )

    return fit(
        ranker,
        functools.partial(ranker_loss, absolute_weight=sampling.absolute_weight),
        epoch_batches,
        settings,
        output_dir,
        evaluate=evaluate if val_records else None,
        save_model=lambda model, directory: model.save(Path(directory)),
        new_parameter_prefixes=("head.",),
        logger=logger,
        run_config=run_config,
    )
