"""Gather the experiments into one comparison per dataset: `make eval` / `python -m blender.cli.compare`
(`blender.evaluation.compare.compare_datasets`)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from blender.cli.common import settings, user_errors
from blender.evaluation.compare import ComparedDataset, compare_datasets


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, dict]:
    datasets = {name: settings(ComparedDataset, node) for name, node in cfg.datasets.items()}
    return compare_datasets(
        datasets,
        cfg.experiments_dir,
        cfg.output_dir,
        list(cfg.aggregations),
        list(cfg.metrics),
        cfg.bootstrap_samples,
        cfg.seed,
    )


if __name__ == "__main__":
    main()
