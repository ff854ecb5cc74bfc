"""Evaluate a ranker checkpoint on a split: `make eval CKPT=...` / `python -m blender.cli.evaluate checkpoint=...`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from blender.cli.common import inference_settings, load_split, pick_best_model
from blender.evaluation.evaluate import evaluate_ranker
from blender.evaluation.report import print_table, write_report
from blender.rankers.pairranker import PairRanker

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run(cfg)


def run(cfg: DictConfig) -> dict:
    data = cfg.data
    checkpoint = Path(cfg.checkpoint)
    ranker = PairRanker.load(checkpoint)
    records = load_split(data, cfg.split, data.limit_val)
    best_model = pick_best_model(load_split(data, data.train_split, data.limit_train), data)
    table = evaluate_ranker(ranker, records, best_model, data.oracle, list(cfg.eval.aggregations),
                            inference_settings(cfg.inference), cfg.eval.bootstrap_samples, cfg.eval.seed)  # fmt: skip
    table.update(dataset=data.name, split=cfg.split, checkpoint=str(checkpoint))
    title = f"{data.name} {cfg.split}: PairRanker ({checkpoint})"
    print_table(table, title)
    markdown, _ = write_report(table, Path(cfg.output_dir), f"ranking_{data.name}_{cfg.split}", title)
    log.info("wrote %s", markdown)
    return table


if __name__ == "__main__":
    main()
