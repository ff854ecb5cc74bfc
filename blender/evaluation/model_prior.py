"""The model prior: how good each source model is on train, combined with a ranker's scores.

In an ensemble the candidates' source models are known, and some models are better than others on average.
A ranker that reads only the texts must rediscover that from them; the prior states it. Each model's prior is
its mean oracle score on the training split, as log-odds when the oracle is a probability (gpt4_pref). Per
instruction, the ranker's scores and the priors of that instruction's models are each z-scored, and the row's
score is `z(ranker) + weight * z(prior)`. The weight is chosen on data it is not then scored on: the report
cross-fits it (fit on one fold of the split, score the other), and the weight saved beside a checkpoint is
the one fitted on the whole validation split, for new data. `mix` and `cross_fitted_mix` do the same with any
second score per candidate in the prior's place (a frozen probe's: `scripts/pool_seeds.py --mix-with`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from blender.evaluation.ranking import Method, model_means, oracle_scores
from blender.files import write_json_atomic
from blender.records.schema import Record, RecordError

log = logging.getLogger(__name__)

PRIOR_FILE = "model_prior.json"
PRIOR_ROW_SUFFIX = " + model prior"
WEIGHT_GRID = tuple(round(0.25 * i, 2) for i in range(17))  # 0, 0.25, ..., 4
EPS = 1e-3  # log-odds of a mean of exactly 0 or 1 stay finite


def _z(values: np.ndarray) -> np.ndarray:
    """Values centred and scaled within one instruction (all zero when they are all equal)."""
    values = np.asarray(values, dtype=float)
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def fit_priors(train: Sequence[Record], oracle: str) -> dict[str, float]:
    """Each model's prior: its mean oracle score on `train`, as log-odds when every score lies in [0, 1]."""
    means = model_means(train, oracle)
    scores = np.concatenate([oracle_scores(r, oracle) for r in train])
    if scores.min() >= 0.0 and scores.max() <= 1.0:
        return {
            m: float(np.log((np.clip(v, EPS, 1 - EPS)) / (1 - np.clip(v, EPS, 1 - EPS))))
            for m, v in means.items()
        }
    return means


def pick_quality(scores: Sequence[np.ndarray], records: Sequence[Record], oracle: str) -> float:
    """Mean oracle score of each record's argmax pick."""
    return float(
        np.mean([oracle_scores(r, oracle)[int(np.argmax(s))] for r, s in zip(records, scores, strict=True)])
    )


@dataclass
class ModelPrior:
    """Per-model priors and the weight that mixes them with a ranker's scores.

    Attributes:
        priors: model name -> prior (log-odds of its mean oracle score on train).
        weight: the prior's weight against the ranker's z-scored scores.
        oracle: the score the priors and the weight were fitted on.
        fitted_on: where the weight was fitted (e.g. "alpaca_blend_modern val, 100 records").
    """

    priors: dict[str, float]
    weight: float = 0.0
    oracle: str = ""
    fitted_on: str = ""
    unknown_models: list[str] = field(default_factory=list)

    def prior_scores(self, models: Sequence[str]) -> np.ndarray:
        """The priors of one instruction's models; a model train never saw gets the mean prior (no opinion)."""
        unseen = [m for m in models if m not in self.priors]
        for model in unseen:
            if model not in self.unknown_models:
                self.unknown_models.append(model)
                log.warning(
                    "model %s has no prior (not in the training split): it gets the mean prior", model
                )
        neutral = float(np.mean(list(self.priors.values())))
        return np.array([self.priors.get(m, neutral) for m in models])

    def combine(
        self, ranker_scores: np.ndarray, models: Sequence[str], weight: float | None = None
    ) -> np.ndarray:
        """One instruction's combined scores: z(ranker) + weight * z(prior)."""
        return mix(ranker_scores, self.prior_scores(models), self.weight if weight is None else weight)

    def save(self, path: str | os.PathLike) -> Path:
        data = asdict(self)
        data.pop("unknown_models")
        return write_json_atomic(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelPrior:
        path = Path(path)
        if path.is_dir():
            path = path / PRIOR_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                priors={str(m): float(v) for m, v in data["priors"].items()},
                weight=float(data["weight"]),
                oracle=str(data.get("oracle", "")),
                fitted_on=str(data.get("fitted_on", "")),
            )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no model prior here (it is written by make train-ranker)"
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{path}: not a model prior file ({type(error).__name__}: {error})") from None


def mix(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """One instruction's `z(first) + weight * z(second)`."""
    return _z(first) + weight * _z(second)


def fit_mix_weight(
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    records: Sequence[Record],
    oracle: str,
    grid: Sequence[float] = WEIGHT_GRID,
) -> float:
    """The grid weight whose `mix` picks have the best mean oracle score on `records` (the smallest on a tie)."""
    best_weight, best_quality = 0.0, -np.inf
    for weight in grid:
        combined = [mix(a, b, weight) for a, b in zip(first, second, strict=True)]
        quality = pick_quality(combined, records, oracle)
        if quality > best_quality + 1e-12:
            best_weight, best_quality = float(weight), quality
    return best_weight


def cross_fitted_mix(
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    records: Sequence[Record],
    oracle: str,
    folds: int = 2,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[float]]:
    """`mix` scores where each record's weight was fitted on the other folds only, so the row is never scored on
    the data its weight was chosen on.

    Returns:
        The combined scores in record order, and each fold's weight.
    """
    if folds < 2 or folds > len(records):
        raise ValueError(f"cross-fitting needs 2 <= folds <= records ({len(records)}), got {folds}")
    fold_of = np.empty(len(records), dtype=int)
    fold_of[np.random.default_rng(seed).permutation(len(records))] = np.arange(len(records)) % folds
    combined: list[np.ndarray | None] = [None] * len(records)
    weights = []
    for fold in range(folds):
        fit = [i for i in range(len(records)) if fold_of[i] != fold]
        weight = fit_mix_weight(
            [first[i] for i in fit], [second[i] for i in fit], [records[i] for i in fit], oracle
        )
        weights.append(weight)
        for i in np.flatnonzero(fold_of == fold):
            combined[i] = mix(first[i], second[i], weight)
    return combined, weights


def fit_weight(
    prior: ModelPrior,
    ranker_scores: Sequence[np.ndarray],
    records: Sequence[Record],
    oracle: str,
    grid: Sequence[float] = WEIGHT_GRID,
) -> float:
    """The prior's grid weight whose combined picks have the best mean oracle score on `records`."""
    priors = [prior.prior_scores(r.models) for r in records]
    return fit_mix_weight(ranker_scores, priors, records, oracle, grid)


def cross_fitted_scores(
    prior: ModelPrior,
    ranker_scores: Sequence[np.ndarray],
    records: Sequence[Record],
    oracle: str,
    folds: int = 2,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[float]]:
    """The ranker's scores mixed with the prior (`cross_fitted_mix`): the combined scores in record order, and each
    fold's weight."""
    priors = [prior.prior_scores(r.models) for r in records]
    return cross_fitted_mix(ranker_scores, priors, records, oracle, folds, seed)


def prior_method(
    base: Method,
    records: Sequence[Record],
    train: Sequence[Record],
    oracle: str,
    folds: int = 2,
    seed: int = 0,
    train_oracle: str | None = None,
) -> tuple[Method, ModelPrior]:
    """The row `<base> + model prior` (priors fitted on `train` by `train_oracle`, default `oracle`; weight
    cross-fitted over `folds` of `records` by `oracle`), and the prior with the weight fitted on all of
    `records`, to save beside the checkpoint for new data."""
    prior = ModelPrior(fit_priors(train, train_oracle or oracle), oracle=oracle)
    combined, weights = cross_fitted_scores(prior, base.scores, records, oracle, folds, seed)
    prior.weight = fit_weight(prior, base.scores, records, oracle)
    prior.fitted_on = f"{len(records)} records, priors from {len(train)} train records"
    log.info(
        "%s + model prior: weights %s across %d folds (%.2f fitted on all %d records)",
        base.name,
        weights,
        folds,
        prior.weight,
        len(records),
    )
    row = Method(
        base.name + PRIOR_ROW_SUFFIX,
        scores=combined,
        forward_passes=base.forward_passes,
        seconds=base.seconds,
        notes={"prior_fold_weights": weights, "prior_weight": prior.weight},
    )
    return row, prior


def first_oracle_of(train: Sequence[Record], oracles: Sequence[str]) -> str | None:
    """The first of `oracles` every train record carries (MixInstruct's train has metric scores but no judge
    labels), or None."""
    for oracle in dict.fromkeys(oracles):
        try:
            for record in train:
                oracle_scores(record, oracle)
        except RecordError:
            continue
        return oracle
    return None
