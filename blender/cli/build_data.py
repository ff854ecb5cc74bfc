"""Build MixInstruct from its sources (sources -> mix -> generate -> merge), skipping complete stages.

python -m blender.cli.build_data data_build=mixinstruct          # the paper's recipe (make data)
python -m blender.cli.build_data data_build=fixture              # offline smoke run
python -m blender.cli.build_data stages=[sources,mix]            # only these stages
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from blender.cli.common import user_errors
from blender.data.build import build_settings_from_dict, run_build


@hydra.main(version_base="1.3", config_path="../../conf", config_name="build_data")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, str]:
    """Run the build that `cfg.data_build` describes.

    Args:
        cfg: the composed `build_data` config.
    Returns:
        stage name -> "ran" or "skipped".
    """
    settings = build_settings_from_dict(OmegaConf.to_container(cfg.data_build, resolve=True))
    stages = list(cfg.stages) if cfg.get("stages") is not None else None
    return run_build(settings, only=stages)


if __name__ == "__main__":
    main()
