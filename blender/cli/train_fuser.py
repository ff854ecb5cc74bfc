"""Train a GenFuser on a ranker's top-K, then fuse and score the eval split: `make train-fuser`."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from accelerate.utils import set_seed
from hydra.utils import instantiate
from omegaconf import DictConfig

from blender.cli.common import inference_settings, load_split, to_dict, user_errors
from blender.cli.evaluate import report_fused
from blender.evaluation.ranking import Method
from blender.files import write_json_atomic
from blender.fuser.model import GenerationSettings, GenFuser
from blender.fuser.topk import TopKSettings, ranker_rankings
from blender.fuser.training import fuser_examples, train_fuser
from blender.training.loop import LoggerSettings, TrainSettings

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train_fuser")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    data = cfg.data
    phases: dict[str, float] = {}  # seconds per phase, logged and written to <run>/phases.json
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 1)
        clock = now

    train = load_split(data, data.train_split, data.limit_train)
    val = load_split(data, data.val_split, data.limit_val)
    # The fuser learns from the first `train_limit` instructions, and only their top-K is computed; the best
    # single model and Table 2's named models are still chosen on all of `train`.
    fuser_train = train[: cfg.train_limit] if cfg.get("train_limit") is not None else train
    topk = TopKSettings(**to_dict(cfg.topk))
    inference = inference_settings(cfg.inference)
    lap("load_data")
    train_rankings, train_source = ranker_rankings(fuser_train, data.train_split, data.name, topk, inference)
    lap("topk_train")
    # `topk.pair_orders` may halve the train split's cost; val and eval are ranked on the full matrix, as
    # `make eval` and inference rank them, so the fused row reads the same top-K everywhere.
    full = replace(topk, pair_orders="both")
    val_rankings, val_source = ranker_rankings(val, data.val_split, data.name, full, inference)
    lap("topk_val")
    log.info(
        "top-K (K=%d, %s): train %s, val %s",
        topk.k,
        topk.selection,
        train_source.get("source"),
        val_source.get("source"),
    )
    # Before the model: its new weights (cross-attention, or all of a random config) are drawn here.
    set_seed(cfg.trainer.seed)
    fuser: GenFuser = instantiate(cfg.fuser, _convert_="all")
    lap("build_fuser")
    output_dir = Path(cfg.output_dir)
    n_val_loss = cfg.get("val_loss_limit")
    val_loss_records = val[:n_val_loss] if n_val_loss is not None else val
    summary = train_fuser(
        fuser,
        fuser_examples(fuser, fuser_train, train_rankings, topk.k),
        fuser_examples(fuser, val_loss_records, val_rankings[: len(val_loss_records)], topk.k),
        TrainSettings(**to_dict(cfg.trainer)),
        output_dir,
        shuffle_candidates=cfg.shuffle_candidates,
        logger=LoggerSettings(**to_dict(cfg.logger)),
        run_config=to_dict(cfg),
    )
    lap("train")
    log.info(
        "training done: best %s = %s at epoch %s",
        cfg.trainer.best_metric,
        summary["best_value"],
        summary["best_epoch"],
    )
    if cfg.evaluate_after_training and (output_dir / "best").is_dir():
        if data.eval_split == data.val_split:
            records, rankings, source = val, val_rankings, val_source
        else:
            records = load_split(data, data.eval_split, data.limit_val)
            rankings, source = ranker_rankings(records, data.eval_split, data.name, full, inference)
        best = GenFuser.load(output_dir / "best", GenerationSettings(**to_dict(cfg.fuser.generation)))
        rankers = []
        if topk.selection == "ranker" and all(s is not None for s in source["scores"]):
            rankers = [
                Method(f"PairRanker + {topk.aggregation}", scores=[np.asarray(s) for s in source["scores"]])
            ]
        lap("load_best")
        summary["eval"] = report_fused(
            cfg,
            best,
            str(output_dir / "best"),
            records,
            rankings,
            topk.k,
            topk.selection,
            rankers,
            train,
            data.eval_split,
            output_dir / "eval",
        )
        phases.update({f"eval/{k}": v for k, v in summary["eval"].get("seconds", {}).items()})
        lap("eval")
    summary["phases"] = phases
    log.info("phases (s): %s", ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    write_json_atomic(output_dir / "phases.json", phases)
    return summary


if __name__ == "__main__":
    main()
