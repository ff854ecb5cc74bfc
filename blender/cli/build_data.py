"""Build MixInstruct from its sources (sources -> mix -> generate -> merge -> score -> judge -> finalize),
skipping complete stages.

python -m blender.cli.build_data data_build=mixinstruct          # the paper's recipe (make data)
python -m blender.cli.build_data data_build=fixture              # offline smoke run
python -m blender.cli.build_data stages=[sources,mix]            # only these stages
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from blender.cli.common import user_errors
from blender.metrics.judge import JudgeError
from blender.metrics.scoring import ScoringError
from blender.mixinstruct.build import build_settings_from_dict
from blender.mixinstruct.pipeline import run_build

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="build_data")
def main(cfg: DictConfig) -> None:
    with user_errors():
        try:
            run(cfg)
        except (JudgeError, ScoringError) as error:
            # A judge that stays down or a journal from other settings: what and where, then exit 2.
            log.error("%s", error)
            sys.exit(2)


def run(cfg: DictConfig) -> dict[str, str]:
    """Run the build that `cfg.data_build` describes, scoring with `cfg.metrics` and judging with `cfg.judge`.

    Args:
        cfg: the composed `build_data` config.
    Returns:
        stage name -> "ran" or "skipped".
    """
    judge = instantiate(cfg.judge) if cfg.get("judge") is not None else None
    metrics = OmegaConf.to_container(cfg.metrics, resolve=True) if cfg.get("metrics") is not None else None
    settings = build_settings_from_dict(
        OmegaConf.to_container(cfg.data_build, resolve=True), metrics=metrics, judge=judge
    )
    stages = list(cfg.stages) if cfg.get("stages") is not None else None
    return run_build(settings, only=stages)


if __name__ == "__main__":
    main()
