"""Train a ranker, then evaluate its best checkpoint: `make train-ranker` / `python -m blender.cli.train_ranker`.

`ranker=pairranker|summareranker|simcls` trains through the one loop; `ranker=mlm_scoring` has nothing to
train and is evaluated directly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from accelerate.utils import set_seed
from hydra.utils import instantiate
from omegaconf import DictConfig

from blender.cli.common import inference_settings, load_split, pick_best_model, to_dict, user_errors
from blender.cli.evaluate import evaluate_and_report
from blender.rankers.backbone import build_backbone
from blender.rankers.loading import RANKER_CLASSES, load_ranker
from blender.training.loop import LoggerSettings, TrainSettings
from blender.training.pointwise import SimCLSSampling, SummaRerankerSampling, train_pointwise
from blender.training.ranker import PairSampling, train_ranker

# ranker=<name> -> how its `sampling` block reads; mlm_scoring is unsupervised and has none.
SAMPLINGS = {"pairranker": PairSampling, "summareranker": SummaRerankerSampling, "simcls": SimCLSSampling}

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train_ranker")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    data = cfg.data
    train = load_split(data, data.train_split, data.limit_train)
    val = load_split(data, data.val_split, data.limit_val)
    best_model = pick_best_model(train, data)
    ranker_cfg = to_dict(cfg.ranker)
    kind = ranker_cfg.pop("name", "pairranker")
    if kind not in RANKER_CLASSES:
        raise ValueError(f"ranker.name={kind!r}; choose one of {sorted(RANKER_CLASSES)}")
    sampling = ranker_cfg.pop("sampling", None)
    inference = inference_settings(cfg.inference)
    output_dir = Path(cfg.output_dir)
    # Seeded before the model is built: the head and the new marker embeddings start from random weights, and
    # drawn from an unseeded process they made two runs of one config differ by as much as the recipes did.
    set_seed(cfg.trainer.seed)
    if kind == "mlm_scoring":
        log.info("MLM-Scoring is unsupervised: nothing to train; scoring with the masked LM as it is")
        # The backbone group names the masked LM; `config` would clash with instantiate's own argument.
        ranker = instantiate({**ranker_cfg, **to_dict(cfg.backbone)}, _convert_="all")
        ranker.save(output_dir / "best")
        summary: dict[str, Any] = {"best_value": None, "best_epoch": None, "global_step": 0, "trained": False}
    else:
        backbone, tokenizer = build_backbone(**to_dict(cfg.backbone))
        ranker = instantiate(
            ranker_cfg, backbone=backbone, tokenizer=tokenizer, task_names=list(data.signals)
        )
        trainer_cfg = to_dict(cfg.trainer)
        val_mode = trainer_cfg.pop("val_mode")
        common = dict(
            settings=TrainSettings(**trainer_cfg),
            output_dir=output_dir,
            inference=inference,
            logger=LoggerSettings(**to_dict(cfg.logger)),
            run_config=to_dict(cfg),
        )
        args = (
            ranker,
            train,
            val,
            list(data.signals),
            data.val_oracle,
            best_model,
            SAMPLINGS[kind](**sampling),
        )
        if kind == "pairranker":
            summary = train_ranker(*args, val_mode=val_mode, **common)
        else:
            summary = train_pointwise(*args, **common)
        log.info(
            "training done: best %s = %s at epoch %s",
            cfg.trainer.best_metric,
            summary["best_value"],
            summary["best_epoch"],
        )
    if cfg.evaluate_after_training and (output_dir / "best").is_dir():
        best = load_ranker(output_dir / "best")
        eval_records = val if data.eval_split == data.val_split else load_split(data, data.eval_split)
        summary["eval"] = evaluate_and_report(
            cfg, best, eval_records, train, data.eval_split, output_dir / "eval", str(output_dir / "best")
        )
    return summary


if __name__ == "__main__":
    main()
