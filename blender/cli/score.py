"""Score every candidate of a split with reference metrics: `make score` / `python -m blender.cli.score`.

Writes `<output_dir>/<split>.jsonl` (a data folder: `data.path=<output_dir>` reads it), resumable after a
kill, then Table 2 / Table 3 of the metrics alone (no ranker) into `<output_dir>/tables/`
(`blender.evaluation.reporting.score_and_report`).
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from blender.cli.common import data_settings, settings, to_dict, user_errors
from blender.evaluation.reporting import EvalSettings, TableSettings, score_and_report


@hydra.main(version_base="1.3", config_path="../../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    data = data_settings(cfg)
    return score_and_report(
        data.load(cfg.split, cfg.limit),
        to_dict(cfg.metrics),
        data,
        cfg.split,
        cfg.output_dir,
        settings(TableSettings, cfg.tables),
        settings(EvalSettings, cfg.eval),
        cfg.batch_records,
        list(cfg.extra_outputs),
        cfg.resume,
        cfg.show_progress,
        cfg.report,
    )


if __name__ == "__main__":
    main()
