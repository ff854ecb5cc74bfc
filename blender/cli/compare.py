"""Gather the experiments into one comparison per dataset: `make eval` / `python -m blender.cli.compare`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from blender.cli.common import to_dict, user_errors
from blender.data.loading import find_split_file, load_candidates, read_jsonl
from blender.evaluation.compare import ExperimentRow, compare_experiments

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, dict]:
    results = {}
    for dataset, settings in to_dict(cfg.datasets).items():
        experiments = [ExperimentRow(name, label) for name, label in settings["experiments"].items()]
        if not any((Path(cfg.experiments_dir) / e.name / "eval").is_dir() for e in experiments):
            log.info("%s: no experiment has run yet; skipped", dataset)
            continue
        records = read_jsonl(find_split_file(settings["scored_path"], settings["split"]))
        (train,) = load_candidates(settings["train_path"], splits=("train",))
        results[dataset] = compare_experiments(
            records,
            train,
            dataset,
            settings["split"],
            settings["oracle"],
            experiments,
            cfg.experiments_dir,
            cfg.output_dir,
            list(cfg.aggregations),
            list(cfg.metrics),
            cfg.bootstrap_samples,
            cfg.seed,
            settings.get("versus", []),
        )
        log.info("%s: wrote %s", dataset, ", ".join(results[dataset]["files"]))
    return results


if __name__ == "__main__":
    main()
