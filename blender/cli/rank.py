"""Rank a JSONL file: `blender-rank checkpoint=... input=in.jsonl output=out.jsonl` (see blender/rank_file.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from blender.api import Blender
from blender.cli.common import settings, user_errors
from blender.rank_file import rank_file
from blender.rankers.predict import InferenceSettings

log = logging.getLogger(__name__)


# An absolute path: run as the `blender-rank` console script, Hydra would read a relative one as a package.
@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).resolve().parents[2] / "conf"), config_name="rank"
)
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, int]:
    blender = Blender.from_pretrained(
        cfg.checkpoint,
        device=cfg.device,
        inference=settings(InferenceSettings, cfg.inference),
        backbone=cfg.backbone,
    )
    summary = rank_file(
        blender,
        cfg.input,
        cfg.output,
        chunk_size=cfg.chunk_size,
        aggregation=cfg.aggregation,
        seed=cfg.seed,
        show_progress=cfg.show_progress,
    )
    log.info(
        "%s: %d records (%d already there, %d ranked now)",
        cfg.output,
        summary["records"],
        summary["resumed"],
        summary["ranked"],
    )
    return summary


if __name__ == "__main__":
    main()
