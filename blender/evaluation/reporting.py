"""Report a ranker (and a fuser) on a split: the ranking table, the saved scores, Table 2 / Table 3, the fused row.

What `make eval` runs, and the end of `make train-ranker` and `make train-fuser`, from typed settings, so "train,
then evaluate" runs from Python without Hydra. The rows come from `methods`, the tables from `ranking` and
`paper_tables`, the files from `report` and `paper_report`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from blender.aggregation import get_aggregation
from blender.evaluation.differences import paired_differences, render_differences
from blender.evaluation.paper_report import report_paper_tables
from blender.evaluation.paper_tables import METRIC_TITLES, available_metrics, named_models_for
from blender.evaluation.ranking import Method, best_model_on
from blender.files import write_json_atomic, write_text_atomic
from blender.fuser.fused import (
    FusedAnswers,
)
from blender.fuser.model import GenerationSettings
from blender.metrics.base import build_metrics
from blender.metrics.judge import JudgeSettings
from blender.metrics.scoring import read_scored, score_split
from blender.rankers.predict import InferenceSettings
from blender.records import DataSettings, Record, RecordError, find_split_file, read_jsonl
from blender.settings import check_types, require_positive

log = logging.getLogger(__name__)

PAPER_METRICS = ("bertscore", "bartscore", "bleurt", "bleu", "rouge1", "rouge2", "rougeL")


@dataclass
class EvalSettings:
    """The ranking table (`eval` in config).

    Attributes:
        aggregations: a pairwise ranker's rows, each read off its one full matrix.
        bootstrap_samples: resamples of the 95% intervals.
        seed: the bootstrap's, the bubble run's and the prior's cross-fitting seed.
        model_prior: add the row "<ranker> + model prior": each model's mean oracle score on train as a prior,
            mixed with the ranker's first row by a weight cross-fitted on the split (`evaluation.model_prior`).
        model_prior_folds: the cross-fitting's folds.
    """

    CONFIG_KEY: ClassVar[str] = "eval"

    aggregations: list[str] = field(default_factory=lambda: ["max_logits", "max_wins", "bubble"])
    bootstrap_samples: int = 1000
    seed: int = 0
    model_prior: bool = True
    model_prior_folds: int = 2

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "bootstrap_samples")
        if self.model_prior_folds < 2:
            raise ValueError(f"eval.model_prior_folds must be at least 2, got {self.model_prior_folds}")
        for name in self.aggregations:
            get_aggregation(name)  # an unknown name fails here, listing the choices


@dataclass
class TableSettings:
    """The paper's Table 2 / Table 3 beside the ranking table (`tables` in config).

    Attributes:
        enabled: write them when the evaluated split's candidates carry reference metrics.
        scores_path: a `make score` folder holding the scored evaluated split; None: the split as loaded.
        named_models: the models of the "≥ model %" columns; None: the paper's Vicuna and Open Assistant on
            MixInstruct, else the two best single models on train.
        metrics: the reference metrics reported (those the records carry).
    """

    CONFIG_KEY: ClassVar[str] = "tables"

    enabled: bool = True
    scores_path: str | None = None
    named_models: list[str] | None = None
    metrics: list[str] = field(default_factory=lambda: list(PAPER_METRICS))

    def __post_init__(self) -> None:
        check_types(self)


@dataclass
class FuseSettings:
    """The fused row of `make eval` (`fuse` in config).

    Attributes:
        k: candidates fused (paper: 3), the ranker's top-K by MaxLogits.
        generation: decoding overrides (`GenerationSettings` fields); None: as saved with the fuser.
        zero_shot: also fuse with the `fuser` config's pretrained model, never trained on fusion (same prompt and
            decoding), and report its row and its paired difference to the trained fuser's.
    """

    CONFIG_KEY: ClassVar[str] = "fuse"

    k: int = 3
    generation: dict[str, Any] | None = None
    zero_shot: bool = False

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "k")
        known = {f.name for f in fields(GenerationSettings)}
        unknown = sorted(set(self.generation or {}) - known)
        if unknown:
            raise ValueError(f"fuse.generation: unknown setting(s) {unknown}; choose from {sorted(known)}")


@dataclass
class ReportSettings:
    """Everything reporting reads besides the data: how rows are computed, which tables, what scores a fused answer.

    Attributes:
        evaluation: the ranking table's settings.
        tables: Table 2 / Table 3.
        inference: batching and precision of the ranker's forward passes.
        metric_set: the `conf/metrics/` set that scores fused answers (and candidates no `make score` scored).
        judge: an LLM judge that places each fused answer among the candidates (GPT-Rank); None: no judge.
    """

    evaluation: EvalSettings = field(default_factory=EvalSettings)
    tables: TableSettings = field(default_factory=TableSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    metric_set: dict[str, Any] | None = None
    judge: JudgeSettings | None = None


def best_single_model(train: Sequence[Record], data: DataSettings) -> str:
    """The best single model on train by the evaluation oracle, or by `val_oracle` where train lacks it
    (MixInstruct's ChatGPT labels exist on test only)."""
    try:
        return best_model_on(train, data.oracle)
    except RecordError:
        log.info("train has no %s; choosing the best single model by %s", data.oracle, data.val_oracle)
        return best_model_on(train, data.val_oracle)


def choose_named_models(
    data: DataSettings,
    explicit: Sequence[str] | None,
    fallback: Sequence[Record],
    train: Sequence[Record] | None = None,
) -> list[str]:
    """The models of Table 2's "≥ model %" columns: `explicit` when given; else the paper's Vicuna and Open
    Assistant on MixInstruct, or the two best single models on train (by the oracle, else by val_oracle);
    on `fallback` (the evaluated split itself) when train cannot be read. Pass `train` when already loaded."""
    if explicit:
        return list(explicit)
    if data.name == "mixinstruct":  # the paper's named models need no train split
        return named_models_for(fallback, data.oracle, data.name)
    if train is None:
        try:
            train = data.load(data.train_split, data.limit_train)
        except (OSError, RecordError) as error:
            log.warning("named models chosen on the evaluated split: train is not readable (%s)", error)
            return named_models_for(fallback, data.oracle, data.name)
    for oracle in dict.fromkeys([data.oracle, data.val_oracle]):
        try:
            return named_models_for(train, oracle, data.name)
        except RecordError:
            continue
    return named_models_for(fallback, data.oracle, data.name)


def scored_records(
    records: list[Record], scores_path: str | os.PathLike | None, data_name: str, split: str
) -> list[Record]:
    """The evaluated split with reference-metric scores: from `scores_path` (a `make score` folder) when set,
    checked to hold the same records in the same order, else the split itself."""
    if scores_path is None:
        return records
    path = find_split_file(scores_path, split)
    scored = read_jsonl(path, limit=len(records))
    if [r.id for r in scored] != [r.id for r in records]:
        raise RecordError(
            f"{path}: its records are not the eval split's ({len(scored)} vs {len(records)} records, or other ids "
            f"or order): score the same split with the same limit (make score ARGS='data={data_name} "
            f"split={split}')"
        )
    return scored


def report_split_tables(
    records: list[Record],
    rankers: Sequence[Method],
    title: str,
    train: Sequence[Record] | None,
    data: DataSettings,
    split: str,
    output_dir: Path,
    report: ReportSettings,
    fused: FusedAnswers | Sequence[FusedAnswers] | None = None,
    scored_elsewhere: Sequence[Path] = (),
) -> dict | None:
    """Table 2 / Table 3 next to the ranking table, when the split's candidates carry reference metrics; with
    `fused`, each answer set is scored by `report.metric_set` and gets its Table 2 row (two sets: their paired
    difference too). Candidates without `make score` output are scored here, unless one of `scored_elsewhere`
    already holds them scored."""
    tables = report.tables
    scored = scored_records(records, tables.scores_path, data.name, split)
    extra_outputs, metric_keys = None, list(tables.metrics)
    answer_sets = [fused] if isinstance(fused, FusedAnswers) else list(fused or [])
    if answer_sets:
        metrics = build_metrics(report.metric_set or {})
        metric_keys = [m for m in metric_keys if m in metrics]
        if not available_metrics(scored, metric_keys):
            # No `make score` output for this split: score its candidates here too (cached beside the report).
            scored = read_scored(scored_elsewhere, scored, list(metrics)) or score_split(
                scored, metrics, output_dir / f"scored_{data.name}_{split}.jsonl"
            )
        for answers in answer_sets:
            scored = answers.attach(scored, metrics)
        extra_outputs = {a.row_name: a.field for a in answer_sets}
    if not available_metrics(scored, metric_keys):
        log.info(
            "no reference-metric scores %s on %s %s: Table 2 / Table 3 skipped (make score, then "
            "tables.scores_path=outputs/scores/%s)",
            tables.metrics,
            data.name,
            split,
            data.name,
        )
        return None
    named = choose_named_models(data, tables.named_models, scored, train)
    paper = report_paper_tables(
        scored,
        data.oracle,
        named,
        output_dir,
        f"{data.name}_{split}",
        title,
        dataset=data.name,
        rankers=rankers,
        metric_keys=metric_keys,
        extra_outputs=extra_outputs,
        n_boot=report.evaluation.bootstrap_samples,
        seed=report.evaluation.seed,
    )
    if len(answer_sets) == 2:
        first, second = answer_sets
        differences = paired_differences(
            scored,
            first.field,
            second.field,
            paper["metrics"],
            report.evaluation.bootstrap_samples,
            report.evaluation.seed,
        )
        stem = output_dir / f"fused_difference_{data.name}_{split}"
        title_diff = f"{data.name} {split}: fused answers compared"
        paper["files"] += [
            str(
                write_json_atomic(
                    stem.with_suffix(".json"),
                    {"first": first.row_name, "second": second.row_name, "metrics": differences},
                )
            ),
            str(
                write_text_atomic(
                    stem.with_suffix(".md"),
                    render_differences(differences, first.row_name, second.row_name, title_diff),
                )
            ),
        ]
        paper["differences"] = differences
    log.info("wrote %s", ", ".join(paper["files"]))
    return paper


def score_and_report(
    records: list[Record],
    metric_set: dict[str, Any],
    data: DataSettings,
    split: str,
    output_dir: str | os.PathLike,
    tables: TableSettings,
    evaluation: EvalSettings,
    batch_records: int = 8,
    extra_outputs: Sequence[str] = (),
    resume: bool = True,
    show_progress: bool = True,
    write_tables: bool = True,
) -> dict[str, Any]:
    """`make score`: add every metric of `metric_set` to every candidate of `records` (resumably, into
    `<output_dir>/<split>.jsonl`), then Table 2 / Table 3 of the metrics alone (no ranker) into `tables/`."""
    # Build the metrics before anything is written, so a missing checkpoint fails at once, naming each one.
    metrics = build_metrics(metric_set)
    out_path = Path(output_dir) / f"{split}.jsonl"
    scored = score_split(
        records,
        metrics,
        out_path,
        batch_records=batch_records,
        extra_outputs=list(extra_outputs),
        resume=resume,
        show_progress=show_progress,
    )
    summary: dict[str, Any] = {"output": str(out_path), "n_records": len(scored), "metrics": list(metrics)}
    if write_tables:
        named = choose_named_models(data, tables.named_models, scored)
        paper = report_paper_tables(
            scored,
            data.oracle,
            named,
            Path(output_dir) / "tables",
            f"{data.name}_{split}",
            f"{data.name} {split}, reference metrics ({', '.join(metrics)})",
            dataset=data.name,
            metric_keys=list(dict.fromkeys([*METRIC_TITLES, *metrics])),
            extra_outputs={name: name for name in extra_outputs},
            n_boot=evaluation.bootstrap_samples,
            seed=evaluation.seed,
        )
        for row in paper["table3"]["rows"]:
            log.info(
                "%-12s vs %s: pearson %.3f  spearman %.3f  footrule %.2f  spearman within %.3f",
                row["method"],
                data.oracle,
                row["pearson"],
                row["spearman"],
                row["footrule"],
                row["spearman_within"],
            )
        log.info("wrote %s", ", ".join(paper["files"]))
        summary["tables"] = paper
    return summary
