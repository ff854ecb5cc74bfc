"""Config → plain values, shared by the entry points: where a `DictConfig` becomes settings objects, and where a
user-fixable error becomes one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, TypeVar

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import blender.cli.resolvers  # noqa: F401  (the resolvers the entry points' configs use)
from blender.evaluation.reporting import EvalSettings, FuseSettings, ReportSettings, TableSettings
from blender.metrics.base import MetricLoadError
from blender.rankers.backbone import BackboneLoadError
from blender.rankers.checkpoint import CheckpointError
from blender.rankers.predict import InferenceSettings
from blender.rankers.saved_scores import SavedScoresError
from blender.records import DataPathError, DataSettings, RecordError
from blender.settings import SettingsError
from blender.training.checkpoints import RunFolderError
from blender.training.loop import NothingToTrainError

log = logging.getLogger(__name__)

# Bad input a user can fix: reported as one line naming what and where, not as a traceback.
USER_ERRORS = (
    RecordError,
    DataPathError,
    BackboneLoadError,
    MetricLoadError,
    CheckpointError,
    FileNotFoundError,
    SettingsError,
    RunFolderError,
    NothingToTrainError,
    SavedScoresError,
)

Settings = TypeVar("Settings")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable error into one logged line and exit status 2 (set HYDRA_FULL_ERROR=1 for a trace)."""
    try:
        yield
    except USER_ERRORS as error:
        log.error("%s", error)
        sys.exit(2)


def to_dict(cfg: DictConfig | dict | None) -> dict[str, Any]:
    """A config node as a plain, resolved dict ({} for None)."""
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def settings(cls: type[Settings], cfg: DictConfig | dict | None) -> Settings:
    """A settings dataclass from a config node of the same fields."""
    return cls(**to_dict(cfg))


def data_settings(cfg: DictConfig) -> DataSettings:
    return settings(DataSettings, cfg.data)


def report_settings(cfg: DictConfig) -> ReportSettings:
    """The `eval`, `tables` and `inference` blocks, and the metric set and judge where the config has them."""
    judge = instantiate(cfg.judge) if cfg.get("judge") is not None else None
    return ReportSettings(
        evaluation=settings(EvalSettings, cfg.eval),
        tables=settings(TableSettings, cfg.tables),
        inference=settings(InferenceSettings, cfg.inference),
        metric_set=to_dict(cfg.metrics) if cfg.get("metrics") is not None else None,
        judge=judge,
    )


def fuse_settings(cfg: DictConfig) -> FuseSettings:
    return settings(FuseSettings, cfg.get("fuse"))
