"""Config → plain values, shared by the entry points: the only place a `DictConfig` becomes settings objects.

Nothing here trains or scores; every entry point composes its config, builds its job here and calls one function
of the library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from blender.evaluation.reporting import EvalSettings, FuseSettings, ReportSettings, TableSettings
from blender.metrics.base import MetricLoadError
from blender.rankers.backbone import BackboneLoadError, BackboneSettings
from blender.rankers.checkpoint import RANKER_CONFIG_FILE, CheckpointError
from blender.rankers.predict import InferenceSettings
from blender.records import DataPathError, DataSettings, RecordError
from blender.training.jobs import RankerJob, RankerSettings
from blender.training.loop import LoggerSettings, TrainSettings

log = logging.getLogger(__name__)

# Bad input a user can fix: reported as one line naming what and where, not as a traceback.
USER_ERRORS = (
    RecordError,
    DataPathError,
    BackboneLoadError,
    MetricLoadError,
    CheckpointError,
    FileNotFoundError,
)

Settings = TypeVar("Settings")
RUN_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]+$")


def run_id_name(run_id: str) -> str:
    """`${run_id_name:${run_id}}` in a config: the run id, if it is a plain name. Resolved when Hydra makes the run
    folder, so a run id holding a path fails before anything is written (`run_id=../../x` would write elsewhere)."""
    if not RUN_ID.match(str(run_id)):
        raise ValueError(
            f"run_id={run_id!r}: a run id must be a name, not a path (letters, digits, '.', '_', '-'; no '/', no '..')"
        )
    return str(run_id)


def eval_dir(checkpoint: str) -> str:
    """`${eval_dir:${checkpoint}}`: `<checkpoint>/../eval`, for a folder that is a ranker checkpoint. Resolved when
    Hydra makes its folder, so a mistyped path fails before `<typo>/best` is created (and then taken, being the
    newest folder, for the next `make eval`'s default)."""
    folder = Path(checkpoint)
    if not (folder / RANKER_CONFIG_FILE).is_file():
        raise ValueError(
            f"checkpoint={checkpoint}: not a ranker checkpoint (no {RANKER_CONFIG_FILE}); give a run's best folder, "
            "e.g. outputs/train_ranker/<run_id>/best"
        )
    return os.path.normpath(folder.parent / "eval")


# Registered with the entry points that use them; `replace` so importing twice (tests) is harmless.
OmegaConf.register_new_resolver("run_id_name", run_id_name, replace=True)
OmegaConf.register_new_resolver("eval_dir", eval_dir, replace=True)


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


def ranker_job(cfg: DictConfig) -> RankerJob:
    """`conf/train_ranker.yaml` as a job: the ranker group's `kind` and `sampling`, and the rest as its model."""
    model = to_dict(cfg.ranker)
    kind, sampling = model.pop("kind"), model.pop("sampling", None)
    return RankerJob(
        data=data_settings(cfg),
        backbone=settings(BackboneSettings, cfg.backbone),
        ranker=RankerSettings(kind, model, sampling),
        trainer=settings(TrainSettings, cfg.trainer),
        output_dir=Path(cfg.output_dir),
        report=report_settings(cfg),
        logger=settings(LoggerSettings, cfg.logger),
        evaluate_after_training=cfg.evaluate_after_training,
        run_config=to_dict(cfg),
    )
