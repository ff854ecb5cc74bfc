"""Train the pointwise baselines (SummaReranker, SimCLS) with the same loop, data and validation as PairRanker.

SummaReranker (the original's `MoE_BCE` with `top_bottom` sub-sampling, num_pos 1, num_neg 1; PAPER.md §8
item 6): per instruction, the num_pos best and num_neg worst candidates go through the model; each is a
positive on a task when it holds the instruction's best signal on that task. SimCLS (`simcls` loss): per
instruction, every candidate and the reference answer are embedded, and the candidates' cosines are pushed
into the signal's order with a margin that grows with the rank gap.
"""

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
from scipy.stats import rankdata
from torch import Tensor

from blender.data.pairs import per_signal, signal_matrix
from blender.data.schema import Record
from blender.evaluation.ranking import Method, oracle_scores, per_example
from blender.metrics.correlation import within_instruction_spearman
from blender.rankers.losses import simcls_ranking_loss, summareranker_bce_loss
from blender.rankers.pointwise import PointwiseRanker, SimCLS, SummaReranker
from blender.rankers.predict import InferenceSettings
from blender.training.loop import LoggerSettings, TrainSettings, fit

log = logging.getLogger(__name__)


@dataclass
class SummaRerankerSampling:
    """Which candidates SummaReranker trains on (`ranker.sampling` in conf/ranker/summareranker.yaml).

    Attributes:
        num_pos: best candidates per instruction, by mean within-instruction rank over the tasks (paper: 1).
        num_neg: worst candidates per instruction (paper: 1).
        signal_transform: as PairRanker's (see `signal_matrix`); one name or {signal: name}.
        min_delta: a candidate within this of the instruction's best signal is a positive on that task
            (the original: exactly the best); one threshold or {signal: threshold}.
    """

    num_pos: int = 1
    num_neg: int = 1
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.0


@dataclass
class SimCLSSampling:
    """SimCLS's loss settings (`ranker.sampling` in conf/ranker/simcls.yaml).

    Attributes:
        margin: λ, the margin per rank of gap.
        gold_margin: margin of the reference answer over every candidate.
        gold_weight: weight of the reference term (0: no reference).
        signal_transform: as PairRanker's; one name or {signal: name}.
        min_delta: candidates whose signals differ by this or less form no pair; with several signals the
            order is their mean within-instruction rank and this is 0.
    """

    margin: float = 0.01
    gold_margin: float = 0.0
    gold_weight: float = 1.0
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.0


def top_bottom(
    signal: np.ndarray, num_pos: int, num_neg: int, min_delta: float | Sequence[float] = 0.0
) -> tuple[list[int], np.ndarray]:
    """SummaReranker's `top_bottom` sub-sampling and its per-task labels.

    Args:
        signal: [n_candidates, n_tasks] training signal, higher is better.
        num_pos: how many of the best candidates to keep.
        num_neg: how many of the worst.
        min_delta: per task (or one for all), a candidate within this of the task's best is a positive.
    Returns:
        (chosen candidate indices, best first then worst; [len(chosen), n_tasks] labels in {0, 1}).
        Candidates are ordered by their mean within-instruction rank over tasks, so signals on different
        scales weigh alike (the original averages raw scores after fixed per-metric weights).

    Example: signal [[0.2], [0.9], [0.5], [0.1]], one positive and one negative: chosen [1, 3], labels
    [[1], [0]].
    """
    mean_rank = np.column_stack([rankdata(signal[:, t]) for t in range(signal.shape[1])]).mean(axis=1)
    order = np.argsort(-mean_rank, kind="stable")
    chosen = list(dict.fromkeys([*order[:num_pos].tolist(), *order[::-1][:num_neg].tolist()]))
    thresholds = np.broadcast_to(np.asarray(min_delta, dtype=float), signal.shape[1:])
    labels = (signal >= signal.max(axis=0) - thresholds).astype(np.float32)
    return chosen, labels[chosen]


def ordering_signal(signal: np.ndarray, min_delta: Sequence[float]) -> tuple[np.ndarray, float]:
    """SimCLS has one score: one task's signal as it is, several combined by mean within-instruction rank."""
    if signal.shape[1] == 1:
        return signal[:, 0], float(min_delta[0])
    return np.column_stack([rankdata(signal[:, t]) for t in range(signal.shape[1])]).mean(axis=1), 0.0


class SummaRerankerBatches(Sequence):
    """One epoch: instructions shuffled, each contributing its top/bottom candidates, `per_batch` at a time."""

    def __init__(
        self, ranker: SummaReranker, encoded, chosen, labels, instructions_per_batch: int, seed: int
    ):
        order = np.random.default_rng(seed).permutation(len(chosen))
        self.batches = [
            order[k : k + instructions_per_batch] for k in range(0, len(order), instructions_per_batch)
        ]
        self.ranker, self.encoded, self.chosen, self.labels = ranker, encoded, chosen, labels

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        sequences = [self.ranker.candidate_ids(self.encoded[e], k) for e in rows for k in self.chosen[e]]
        batch = self.ranker.encoder.pad(sequences)
        batch["labels"] = torch.from_numpy(np.concatenate([self.labels[e] for e in rows]))
        return batch


def summareranker_loss(model: SummaReranker, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    logits = model(batch["input_ids"], batch["attention_mask"])
    loss = summareranker_bce_loss(logits, batch["labels"])
    accuracy = ((logits > 0).float() == batch["labels"]).float().mean().item()
    return loss, {"label_accuracy": accuracy}


class SimCLSBatches(Sequence):
    """One epoch: instructions shuffled, `per_batch` at a time, each with all candidates and its reference."""

    def __init__(self, ranker: SimCLS, sources, candidates, references, signals, per_batch: int, seed: int):
        order = np.random.default_rng(seed).permutation(len(sources))
        # Instructions with equal candidate counts share a batch (the loss works on [batch, n]).
        by_count: dict[int, list[int]] = {}
        for e in order:
            by_count.setdefault(len(candidates[e]), []).append(int(e))
        batches = [g[k : k + per_batch] for g in by_count.values() for k in range(0, len(g), per_batch)]
        self.batches = [batches[k] for k in np.random.default_rng(seed + 1).permutation(len(batches))]
        self.ranker, self.sources, self.candidates = ranker, sources, candidates
        self.references, self.signals = references, signals

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.batches[index]
        source = self.ranker.pad([self.sources[e] for e in rows])
        # The reference is the last "candidate" of each row, so one encoder call embeds both.
        texts = [t for e in rows for t in [*self.candidates[e], self.references[e]]]
        candidates = self.ranker.pad(texts)
        n = len(self.candidates[rows[0]]) + 1
        return {
            "source_ids": source["input_ids"],
            "source_mask": source["attention_mask"],
            "candidate_ids": candidates["input_ids"].view(len(rows), n, -1),
            "candidate_mask": candidates["attention_mask"].view(len(rows), n, -1),
            "signal": torch.tensor(np.stack([self.signals[e] for e in rows]), dtype=torch.float32),
        }


def simcls_loss(
    model: SimCLS, batch: dict[str, Tensor], sampling: SimCLSSampling, min_delta: float
) -> tuple[Tensor, dict[str, float]]:
    scores = model(batch["source_ids"], batch["source_mask"], batch["candidate_ids"], batch["candidate_mask"])
    candidates, reference = scores[:, :-1], scores[:, -1]
    loss = simcls_ranking_loss(
        candidates,
        batch["signal"],
        sampling.margin,
        min_delta,
        reference,
        sampling.gold_margin,
        sampling.gold_weight,
    )
    picked = batch["signal"].gather(1, candidates.argmax(1, keepdim=True)).squeeze(1)
    return loss, {"pick_is_best": (picked >= batch["signal"].max(1).values).float().mean().item()}


def validate_pointwise(
    ranker: PointwiseRanker,
    records: Sequence[Record],
    oracle: str,
    best_model: str,
    inference: InferenceSettings,
) -> dict[str, float]:
    """Validation metrics of the ranker's pick (N scores per instruction), named as PairRanker's."""
    started = time.perf_counter()
    scores = ranker.score_records(records, inference)
    values = per_example(Method("ranker", scores=scores), records, oracle, best_model)
    metrics = {f"val/{k}": float(v.mean()) for k, v in values.items()}
    metrics["val/spearman_within"] = within_instruction_spearman(
        scores, [oracle_scores(r, oracle) for r in records]
    )
    metrics["val/seconds"] = time.perf_counter() - started
    return metrics


def train_pointwise(
    ranker: SummaReranker | SimCLS,
    train_records: Sequence[Record],
    val_records: Sequence[Record],
    signals: Sequence[str],
    oracle: str,
    best_model: str,
    sampling: SummaRerankerSampling | SimCLSSampling,
    settings: TrainSettings,
    output_dir: str | os.PathLike,
    inference: InferenceSettings | None = None,
    logger: LoggerSettings | None = None,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit a pointwise ranker through `fit`; keep the checkpoint whose val pick scores best.

    `settings.batch_size` counts sequences for SummaReranker (instructions × (num_pos + num_neg)) and
    instructions for SimCLS (each brings all its candidates and its reference).

    Returns:
        The loop's summary (best value and epoch, history, final training loss).
    """
    inference = inference or InferenceSettings(show_progress=settings.show_progress)
    signal_by_record = [signal_matrix(r, signals, sampling.signal_transform) for r in train_records]
    min_delta = per_signal(sampling.min_delta, signals, "min_delta")
    if isinstance(ranker, SummaReranker):
        if not isinstance(sampling, SummaRerankerSampling):
            raise TypeError("SummaReranker trains with SummaRerankerSampling")
        encoded = [
            ranker.encoder.encode_record_texts(r.source, [c.text for c in r.candidates])
            for r in train_records
        ]
        picked = [top_bottom(s, sampling.num_pos, sampling.num_neg, min_delta) for s in signal_by_record]
        chosen, labels = [c for c, _ in picked], [lab for _, lab in picked]
        per_batch = max(1, settings.batch_size // (sampling.num_pos + sampling.num_neg))

        def epoch_batches(epoch: int) -> SummaRerankerBatches:
            return SummaRerankerBatches(
                ranker, encoded, chosen, labels, per_batch, seed=settings.seed + epoch
            )

        loss_fn, new_prefixes = summareranker_loss, ("head.",)
        log.info(
            "SummaReranker: %d instructions x %d candidates (top/bottom) per epoch, %d instructions a batch",
            len(chosen),
            sampling.num_pos + sampling.num_neg,
            per_batch,
        )
    elif isinstance(ranker, SimCLS):
        if not isinstance(sampling, SimCLSSampling):
            raise TypeError("SimCLS trains with SimCLSSampling")
        orders = [ordering_signal(s, min_delta) for s in signal_by_record]
        sources = ranker.tokenize([r.source for r in train_records], ranker.source_max_length)
        candidates = [
            ranker.tokenize([c.text for c in r.candidates], ranker.candidate_max_length)
            for r in train_records
        ]
        references = ranker.tokenize([r.output for r in train_records], ranker.candidate_max_length)
        order_values = [o for o, _ in orders]

        @functools.lru_cache(maxsize=1)
        def epoch_batches(epoch: int) -> SimCLSBatches:
            return SimCLSBatches(
                ranker,
                sources,
                candidates,
                references,
                order_values,
                settings.batch_size,
                seed=settings.seed + epoch,
            )

        loss_fn = functools.partial(simcls_loss, sampling=sampling, min_delta=orders[0][1] if orders else 0.0)
        new_prefixes = ()
        log.info("SimCLS: %d instructions per epoch, %d a batch", len(sources), settings.batch_size)
    else:
        raise TypeError(f"train_pointwise trains SummaReranker or SimCLS, not {type(ranker).__name__}")

    def evaluate(model: SummaReranker | SimCLS) -> dict[str, float]:
        return validate_pointwise(model, val_records, oracle, best_model, inference)

    return fit(
        ranker,
        loss_fn,
        epoch_batches,
        settings,
        output_dir,
        evaluate=evaluate if val_records else None,
        save_model=lambda model, directory: model.save(Path(directory)),
        new_parameter_prefixes=new_prefixes,
        logger=logger,
        run_config=run_config,
    )
