"""Train a GenFuser on a ranker's top-K, then fuse and score the eval split: `make train-fuser`
(`blender.training.jobs.train_and_evaluate_fuser`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from blender.cli.common import data_settings, report_settings, settings, to_dict, user_errors
from blender.fuser.model import GenerationSettings
from blender.fuser.topk import TopKSettings
from blender.training.jobs import FuserJob, train_and_evaluate_fuser
from blender.training.loop import LoggerSettings, TrainSettings


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train_fuser")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    job = FuserJob(
        data=data_settings(cfg),
        build_fuser=lambda: instantiate(cfg.fuser, _convert_="all"),
        topk=settings(TopKSettings, cfg.topk),
        trainer=settings(TrainSettings, cfg.trainer),
        output_dir=Path(cfg.output_dir),
        generation=settings(GenerationSettings, cfg.fuser.generation),
        shuffle_candidates=cfg.shuffle_candidates,
        train_limit=cfg.get("train_limit"),
        val_loss_limit=cfg.get("val_loss_limit"),
        report=report_settings(cfg),
        logger=settings(LoggerSettings, cfg.logger),
        evaluate_after_training=cfg.evaluate_after_training,
        run_config=to_dict(cfg),
    )
    return train_and_evaluate_fuser(job)


if __name__ == "__main__":
    main()
