"""Train a ranker, then evaluate its best checkpoint: `make train-ranker` / `python -m blender.cli.train_ranker`.

`ranker=pairranker|summareranker|listwise|simcls` trains through the one loop; `ranker=mlm_scoring` has nothing to
train and is evaluated directly (`blender.training.jobs.train_and_evaluate_ranker`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from blender.cli.common import data_settings, report_settings, settings, to_dict, user_errors
from blender.rankers.backbone import BackboneSettings
from blender.training.jobs import RankerJob, RankerSettings, train_and_evaluate_ranker
from blender.training.loop import LoggerSettings, TrainSettings


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train_ranker")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    return train_and_evaluate_ranker(ranker_job(cfg))


def ranker_job(cfg: DictConfig) -> RankerJob:
    """The ranker group's `kind` and `sampling`, and the rest of it as the kind's model settings."""
    model = to_dict(cfg.ranker)
    kind, sampling, init_from = model.pop("kind"), model.pop("sampling", None), model.pop("init_from", None)
    return RankerJob(
        data=data_settings(cfg),
        backbone=settings(BackboneSettings, cfg.backbone),
        ranker=RankerSettings(kind, model, sampling, init_from),
        trainer=settings(TrainSettings, cfg.trainer),
        output_dir=Path(cfg.output_dir),
        report=report_settings(cfg),
        logger=settings(LoggerSettings, cfg.logger),
        evaluate_after_training=cfg.evaluate_after_training,
        run_config=to_dict(cfg),
    )


if __name__ == "__main__":
    main()
