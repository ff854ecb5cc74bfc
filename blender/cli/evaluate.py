"""Evaluate a ranker checkpoint (any kind) on a split, with the fused row of a fuser's answers when given:
`make eval CKPT=...` / `python -m blender.cli.evaluate checkpoint=...`
(`blender.evaluation.reporting.evaluate_checkpoint`)."""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from blender.cli.common import data_settings, fuse_settings, report_settings, user_errors
from blender.evaluation.checkpoint_report import evaluate_checkpoint


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict:
    fuse = fuse_settings(cfg)
    if fuse.zero_shot and (cfg.get("fuser") is None or cfg.fuser.get("name_or_path") is None):
        raise ValueError("fuse.zero_shot=true needs a pretrained fuser config (fuser=gemma3_270m)")
    # The `fuser` config's pretrained model, never trained on fusion (no adapters: untrained ones change nothing).
    zero_shot = (
        instantiate(cfg.fuser, finetuning={"mode": "full"}, _convert_="all") if fuse.zero_shot else None
    )
    return evaluate_checkpoint(
        cfg.checkpoint,
        data_settings(cfg),
        cfg.split,
        cfg.output_dir,
        report_settings(cfg),
        cfg.fuser_checkpoint,
        fuse,
        zero_shot,
    )


if __name__ == "__main__":
    main()
