"""Train a ranker, then evaluate its best checkpoint: `make train-ranker` / `python -m blender.cli.train_ranker`.

`ranker=pairranker|summareranker|simcls` trains through the one loop; `ranker=mlm_scoring` has nothing to
train and is evaluated directly (`blender.training.jobs.train_and_evaluate_ranker`)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from blender.cli.common import ranker_job, user_errors
from blender.training.jobs import train_and_evaluate_ranker


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train_ranker")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    return train_and_evaluate_ranker(ranker_job(cfg))


if __name__ == "__main__":
    main()
