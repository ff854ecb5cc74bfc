"""Training signals per candidate, and the candidate pairs PairRanker learns from.

The paper's code (PAPER.md §4a) reads one or more stored scores per candidate (`bartscore` for
MixInstruct), takes all C(n, 2) pairs of an example, shuffles them, keeps 5 and flips each pair's order
with p = 0.5. A pair's target per task is sign(Δ), Δ the difference of the two candidates' signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from blender.records.schema import Record, RecordError

SIGNAL_TRANSFORMS = ("none", "logit", "rank")
PAIR_WEIGHTINGS = ("uniform", "top", "contested")


def per_signal(value: Any, signals: Sequence[str], what: str) -> tuple[Any, ...]:
    """One setting per signal: a single value for every signal, or a {signal: value} mapping.

    Signals live on different scales (gpt4_pref in [0, 1] with near-ties under 0.1, BERTScore differences
    of ~0.01, BLEU in 0-100), so a tie threshold or transform that suits one is wrong for another; a mapping
    sets each, and its optional "default" covers signals it does not name.

    Args:
        value: a scalar, or a mapping from signal name (or "default") to value.
        signals: the signal names, one task each.
        what: the setting's config name, for the error.
    Returns:
        One value per signal, in `signals` order.
    """
    if not isinstance(value, Mapping):
        return tuple(value for _ in signals)
    missing = [s for s in signals if s not in value and "default" not in value]
    if missing:
        raise ValueError(f"{what} has no entry for signal(s) {missing} and no 'default': {dict(value)}")
    return tuple(value.get(s, value.get("default")) for s in signals)


def signal_matrix(
    record: Record, signals: Sequence[str], transform: str | Sequence[str] | Mapping[str, str] = "none"
) -> np.ndarray:
    """The training signal of every candidate, one column per task.

    Args:
        record: the example.
        signals: score names read from each candidate's `scores`, one task each.
        transform: "none"; "logit" for probabilities such as gpt4_pref (log-odds, clipped at 1e-6,
            so a threshold on Δ means the same at 0.01 and at 0.5); "rank" for within-instruction ranks.
            One name for every signal, or one per signal (a {signal: name} mapping, see `per_signal`).
    Returns:
        [n_candidates, n_tasks] float array, higher is better.
    """
    transforms = (
        tuple(transform)
        if isinstance(transform, Sequence) and not isinstance(transform, str)
        else per_signal(transform, signals, "signal_transform")
    )
    for name in transforms:
        if name not in SIGNAL_TRANSFORMS:
            raise ValueError(f"signal transform {name!r}; choose one of {list(SIGNAL_TRANSFORMS)}")
    values = np.empty((len(record.candidates), len(signals)))
    for i, candidate in enumerate(record.candidates):
        for t, name in enumerate(signals):
            if name not in candidate.scores:
                raise RecordError(
                    f"record {record.id!r}, candidate {candidate.model!r}: no score {name!r} to train on "
                    f"(it has {sorted(candidate.scores)}); run the scoring job or pick data.signals from those"
                )
            values[i, t] = candidate.scores[name]
    for t, name in enumerate(transforms):
        if name == "logit":
            p = np.clip(values[:, t], 1e-6, 1 - 1e-6)
            values[:, t] = np.log(p) - np.log1p(-p)
        elif name == "rank":
            values[:, t] = rankdata(values[:, t])  # ties share their mean rank, so they stay ties
    return values


@dataclass(frozen=True)
class Pair:
    """Candidates `first` and `second` of record `record_index`, and sign(Δ) per task (0 = tie)."""

    record_index: int
    first: int
    second: int
    targets: tuple[float, ...]


def pair_targets(
    signal: np.ndarray, first: int, second: int, min_delta: float | Sequence[float] = 0.0
) -> tuple[float, ...]:
    """sign(signal[first] − signal[second]) per task; differences within `min_delta` (one threshold, or one
    per task) count as ties (0)."""
    delta = signal[first] - signal[second]
    thresholds = np.broadcast_to(np.asarray(min_delta, dtype=float), delta.shape)
    return tuple(
        0.0 if abs(d) <= m else math.copysign(1.0, d) for d, m in zip(delta, thresholds, strict=True)
    )


def sample_pairs(
    signals: Sequence[np.ndarray],
    pairs_per_example: int,
    rng: np.random.Generator,
    min_delta: float | Sequence[float] = 0.0,
    skip_ties: bool = True,
    weighting: str = "uniform",
) -> list[Pair]:
    """Sample training pairs for one epoch.

    Args:
        signals: per record, its [n_candidates, n_tasks] signal matrix.
        pairs_per_example: pairs kept per record (paper: 5); all of them if fewer exist.
        rng: the epoch's generator (seeded by seed and epoch, so a resumed run draws the same pairs).
        min_delta: |Δ| at or below this is a tie (one threshold, or one per task).
        skip_ties: leave out pairs tied on every task. They contribute nothing to the loss (the
            original computes them anyway, as a constant log 2 with no gradient).
        weighting: "uniform" (the original: every pair alike) or "top": draw a pair with probability
            ∝ 1 / (rank of its better candidate by the first task's signal), so pairs that decide the top of
            the ranking (the candidates a top-1 pick chooses between) are drawn more often than pairs of two
            weak answers. "contested": ∝ 1 / (rank of its weaker candidate), so pairs of two strong answers
            (which a top-1 pick must tell apart) are drawn more often than a strong answer against a weak one.
    Returns:
        The pairs, record by record; each pair's order is random (p = 0.5), as in the original.
    """
    pairs: list[Pair] = []
    for record_index, signal in enumerate(signals):
        n = len(signal)
        candidates = [(i, j) for i in range(n) for j in range(i + 1, n)]
        if skip_ties:
            candidates = [(i, j) for i, j in candidates if any(pair_targets(signal, i, j, min_delta))]
        if weighting == "uniform":
            order = rng.permutation(len(candidates))[:pairs_per_example]
        elif weighting in ("top", "contested"):
            ranks = rankdata(-signal[:, 0], method="min")
            deciding_rank = min if weighting == "top" else max
            weights = np.array([1.0 / deciding_rank(ranks[i], ranks[j]) for i, j in candidates])
            take = min(pairs_per_example, len(candidates))
            order = (
                rng.choice(len(candidates), size=take, replace=False, p=weights / weights.sum())
                if take
                else []
            )
        else:
            raise ValueError(f"pair weighting {weighting!r}; choose uniform, top or contested")
        for k in order:
            i, j = candidates[k]
            if rng.random() < 0.5:
                i, j = j, i
            pairs.append(Pair(record_index, i, j, pair_targets(signal, i, j, min_delta)))
    return pairs
