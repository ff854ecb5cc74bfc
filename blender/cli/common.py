"""Config → plain values, shared by the entry points. Nothing here trains or scores."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from blender.data.loading import DataPathError, load_candidates
from blender.data.preference import load_preference_split
from blender.data.schema import Record, RecordError
from blender.evaluation.paper_tables import named_models_for
from blender.evaluation.ranking import best_model_on
from blender.metrics.base import MetricLoadError
from blender.rankers.backbone import BackboneLoadError
from blender.rankers.pairrm import CheckpointLoadError
from blender.rankers.predict import InferenceSettings

log = logging.getLogger(__name__)

# Bad input a user can fix: reported as one line naming what and where, not as a traceback.
USER_ERRORS = (
    RecordError,
    DataPathError,
    BackboneLoadError,
    CheckpointLoadError,
    MetricLoadError,
    FileNotFoundError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable error into one logged line and exit status 2 (set HYDRA_FULL_ERROR=1 for a trace)."""
    try:
        yield
    except USER_ERRORS as error:
        log.error("%s", error)
        sys.exit(2)


def to_dict(cfg: DictConfig | dict | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def load_split(data: DictConfig, split: str, limit: int | None = None) -> list[Record]:
    if data.get("format", "mixinstruct") == "preference":  # prompt / chosen / rejected pairs
        return load_preference_split(data.path, split, limit=limit, hub_id=data.hub_id)
    (records,) = load_candidates(data.path, splits=(split,), limit=limit, hub_id=data.hub_id)
    return records


def pick_best_model(train: list[Record], data: DictConfig) -> str:
    """The best single model on train by the evaluation oracle, or by val_oracle where train lacks it
    (MixInstruct's ChatGPT labels exist on test only)."""
    try:
        return best_model_on(train, data.oracle)
    except RecordError:
        log.info("train has no %s; choosing the best single model by %s", data.oracle, data.val_oracle)
        return best_model_on(train, data.val_oracle)


def inference_settings(cfg: DictConfig) -> InferenceSettings:
    return InferenceSettings(**to_dict(cfg))


def choose_named_models(
    data: DictConfig, explicit: list[str] | None, fallback: list[Record], train: list[Record] | None = None
) -> list[str]:
    """The models of Table 2's "≥ model %" columns: `explicit` when given; else the paper's Vicuna and Open
    Assistant on MixInstruct, or the two best single models on train (by the oracle, else by val_oracle);
    on `fallback` (the evaluated split itself) when train cannot be read. Pass `train` when already loaded."""
    if explicit:
        return list(explicit)
    if data.name == "mixinstruct":  # the paper's named models need no train split
        return named_models_for(fallback, data.oracle, data.name)
    if train is None:
        try:
            train = load_split(data, data.train_split, data.limit_train)
        except (OSError, RecordError) as error:
            log.warning("named models chosen on the evaluated split: train is not readable (%s)", error)
            return named_models_for(fallback, data.oracle, data.name)
    for oracle in dict.fromkeys([data.oracle, data.val_oracle]):
        try:
            return named_models_for(train, oracle, data.name)
        except RecordError:
            continue
    return named_models_for(fallback, data.oracle, data.name)
