"""Evaluate a ranker checkpoint (any kind) on a split, with the fused row of a fuser's answers when given:
`make eval CKPT=...` / `python -m blender.cli.evaluate checkpoint=...`
(`blender.evaluation.reporting.evaluate_checkpoint`)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from blender.cli.common import data_settings, fuse_settings, report_settings, user_errors
from blender.evaluation.reporting import evaluate_checkpoint


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict:
    return evaluate_checkpoint(
        cfg.checkpoint,
        data_settings(cfg),
        cfg.split,
        cfg.output_dir,
        report_settings(cfg),
        cfg.fuser_checkpoint,
        fuse_settings(cfg),
    )


if __name__ == "__main__":
    main()
