"""Score every candidate of a split with reference metrics: `make score` / `python -m blender.cli.score`.

Writes `<output_dir>/<split>.jsonl` (a data folder: `data.path=<output_dir>` reads it), resumable after a
kill, then Table 2 / Table 3 of the metrics alone (no ranker) into `<output_dir>/tables/`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from blender.cli.common import choose_named_models, load_split, to_dict, user_errors
from blender.evaluation.paper_report import report_paper_tables
from blender.evaluation.paper_tables import METRIC_TITLES
from blender.metrics.base import build_metrics
from blender.metrics.scoring import score_split

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    data = cfg.data
    records = load_split(data, cfg.split, cfg.limit)
    # Build the metrics before anything is written, so a missing checkpoint fails at once, naming each one.
    metrics = build_metrics(cfg.metrics)
    out_path = Path(cfg.output_dir) / f"{cfg.split}.jsonl"
    scored = score_split(
        records,
        metrics,
        out_path,
        batch_records=cfg.batch_records,
        extra_outputs=list(cfg.extra_outputs),
        resume=cfg.resume,
        show_progress=cfg.show_progress,
    )
    summary: dict[str, Any] = {"output": str(out_path), "n_records": len(scored), "metrics": list(metrics)}
    if cfg.report:
        tables = to_dict(cfg.tables)
        named = choose_named_models(data, tables["named_models"], scored)
        stem = f"{data.name}_{cfg.split}"
        report = report_paper_tables(
            scored,
            data.oracle,
            named,
            Path(cfg.output_dir) / "tables",
            stem,
            f"{data.name} {cfg.split}, reference metrics ({', '.join(metrics)})",
            dataset=data.name,
            metric_keys=list(dict.fromkeys([*METRIC_TITLES, *metrics])),
            extra_outputs={field: field for field in cfg.extra_outputs},
            n_boot=tables["bootstrap_samples"],
            seed=tables["seed"],
        )
        for row in report["table3"]["rows"]:
            log.info(
                "%-12s vs %s: pearson %.3f  spearman %.3f  footrule %.2f  spearman within %.3f",
                row["method"],
                data.oracle,
                row["pearson"],
                row["spearman"],
                row["footrule"],
                row["spearman_within"],
            )
        log.info("wrote %s", ", ".join(report["files"]))
        summary["tables"] = report
    return summary


if __name__ == "__main__":
    main()
