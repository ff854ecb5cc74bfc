"""Gather finished experiments (`conf/experiment/*.yaml`) into one comparison per dataset.

Every experiment's evaluation leaves its per-instruction scores beside its table: PairRanker's N×N logits
(`pair_logits_<data>_<split>.npz`), a pointwise ranker's N scores (`candidate_scores_<data>_<split>.npz`), and
the measured forward passes and seconds per instruction (`ranking_<data>_<split>.json`). Here they become rows
of one ranking table on the scored split (so every row shares the bootstrap resamples, and differences are
paired), next to Random, Longest, the best single model and each reference metric used as an oracle; the same
rows then fill the paper's Table 2 / Table 3 shapes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blender.aggregation import get_aggregation
from blender.evaluation.model_prior import PRIOR_ROW_SUFFIX
from blender.evaluation.paper_report import report_paper_tables
from blender.evaluation.paper_tables import METRIC_TITLES, available_metrics, named_models_for
from blender.evaluation.ranking import Method, longest_scores, oracle_scores, ranking_table
from blender.files import write_json_atomic, write_text_atomic
from blender.rankers.registry import get_kind
from blender.rankers.saved_scores import load_candidate_scores, load_pair_logits
from blender.records import Record, find_split_file, load_candidates, read_jsonl

log = logging.getLogger(__name__)


@dataclass
class ExperimentRow:
    """One experiment of the comparison: its run folder's name and the label its rows carry."""

    name: str
    label: str


def _ranking_rows(eval_dir: Path, stem: str) -> tuple[dict[str, dict], str, bool | None]:
    """(rows by method, the best single model, whether the ranker is pairwise: None in tables saved before the
    table named its ranker kind)."""
    path = eval_dir / f"ranking_{stem}.json"
    table = json.loads(path.read_text())
    pairwise = get_kind(table["ranker"]).pairwise if "ranker" in table else None
    return {r["method"]: r for r in table["rows"]}, table["best_model"], pairwise


def _check_ids(path: Path, ids: Sequence[str], records: Sequence[Record]) -> None:
    if list(ids) != [r.id for r in records]:
        raise ValueError(
            f"{path}: its {len(ids)} records are not the compared split's {len(records)} (other ids or "
            "order): evaluate the experiment on the same split"
        )


def experiment_methods(
    eval_dir: Path,
    stem: str,
    label: str,
    records: Sequence[Record],
    aggregations: Sequence[str] = ("max_logits", "bubble"),
    seed: int = 0,
) -> tuple[list[Method], str]:
    """The rows one finished experiment contributes, rebuilt from the scores it saved.

    Args:
        eval_dir: the experiment's `eval/` folder.
        stem: "<data>_<split>", e.g. "alpaca_blend_modern_val".
        label: the row label, e.g. "PairRanker (gpt4_pref)".
        records: the compared split, in the order the experiment evaluated it.
        aggregations: PairRanker's aggregations to show (each read off the saved matrices).
        seed: the bubble run's seed (the evaluation's `eval.seed`).
    Returns:
        (rows, the best single model the experiment chose on train).
    """
    measured, best_model, pairwise = _ranking_rows(eval_dir, stem)
    logits_file, scores_file = eval_dir / f"pair_logits_{stem}.npz", eval_dir / f"candidate_scores_{stem}.npz"
    if pairwise is None:  # a table from before the kind was saved: the file it left says which
        pairwise = logits_file.is_file()
    if pairwise:
        if not logits_file.is_file():
            raise FileNotFoundError(
                f"{eval_dir}: no {logits_file.name} (the pairwise ranker's saved matrices)"
            )
        saved = load_pair_logits(logits_file)
        _check_ids(logits_file, saved.ids, records)
        methods = []
        for aggregation in aggregations:
            row = measured.get(f"PairRanker + {aggregation}")
            if row is None:
                raise ValueError(f"{eval_dir}: no 'PairRanker + {aggregation}' row to take its cost from")
            aggregate = get_aggregation(aggregation)
            scores = [
                aggregate(m, seed=seed + e) if aggregation == "bubble" else aggregate(m)
                for e, m in enumerate(saved.matrices)
            ]
            methods.append(
                Method(
                    f"{label} + {aggregation}",
                    scores=scores,
                    forward_passes=row["forward_passes"],
                    seconds=row["seconds_per_instruction"],
                    notes={"category": "Rankers"},
                )
            )
        return methods, best_model
    if not scores_file.is_file():
        raise FileNotFoundError(f"{eval_dir}: no {scores_file.name} (the pointwise ranker's saved scores)")
    ids, _, scores = load_candidate_scores(scores_file)
    _check_ids(scores_file, ids, records)
    # The ranker's own row, not the row of its scores mixed with the model prior.
    (row,) = [
        r
        for name, r in measured.items()
        if r.get("forward_passes") is not None and not name.endswith(PRIOR_ROW_SUFFIX)
    ]
    method = Method(
        label,
        scores=scores,
        forward_passes=row["forward_passes"],
        seconds=row["seconds_per_instruction"],
        notes={"category": "Rankers"},
    )
    return [method], best_model


def baseline_rows(
    records: Sequence[Record], oracle: str, best_model: str, metrics: Sequence[str]
) -> list[Method]:
    """Random, Longest, the best single model (chosen on train) and each reference metric as an oracle."""
    rows = [
        Method("Random (expected)", expected=True, notes={"category": "Baselines"}),
        Method("Longest", scores=[longest_scores(r) for r in records], notes={"category": "Baselines"}),
        Method(
            f"model: {best_model}",
            picks=[r.models.index(best_model) for r in records],
            notes={"category": "Baselines"},
        ),
    ]
    for key in [*metrics, oracle]:
        rows.append(
            Method(
                f"Oracle ({key})",
                scores=[oracle_scores(r, key) for r in records],
                notes={"category": "Analysis"},
            )
        )
    return rows


COLUMNS = (
    ("top1_oracle", "Top-1 {oracle}↑", "{:.3f}"),
    ("gpt_rank", "GPT-Rank↓", "{:.2f}"),
    ("top3_pct", "Top-3 %↑", "{:.0f}"),
    ("pearson", "Pearson (×100)↑", "{:.1f}"),
    ("spearman", "Spearman (×100)↑", "{:.1f}"),
    ("footrule", "Footrule↓", "{:.1f}"),
    ("spearman_within", "Spearman within instr. (×100)↑", "{:.1f}"),
)
SCALES = {"pearson": 100.0, "spearman": 100.0, "spearman_within": 100.0}


def _cell(row: Mapping[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    scale = SCALES.get(key, 1.0)
    text = fmt.format(value * scale)
    if row.get(f"{key}_ci") is not None:
        low, high = row[f"{key}_ci"]
        text += f" [{fmt.format(low * scale)}, {fmt.format(high * scale)}]"
    return text


def render_comparison(table: Mapping[str, Any], title: str, missing: Sequence[str] = ()) -> str:
    """The comparison as Markdown: one row per method, intervals in brackets, cost per instruction."""
    headers = [
        "Category",
        "Method",
        *(t.format(oracle=table["oracle"]) for _, t, _ in COLUMNS),
        "Passes / instr.",
        "s / instr.",
    ]
    lines = [
        f"## {title}",
        "",
        f"{table['n_examples']} instructions, judged by `{table['oracle']}`; best single model chosen on train: "
        f"`{table['best_model']}`. Brackets: 95% bootstrap intervals over instructions (resamples shared "
        "by every row). Pearson / Spearman / footrule compare each full ranking with the oracle's, per "
        "candidate column across instructions, as the paper's cor_eval.py; Spearman within instruction correlates "
        "the scores inside each instruction, averaged (no interval). Passes: encoder forward passes "
        "actually run per instruction; seconds: measured wall time per instruction on the machine that ran "
        "the experiment.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    for row in table["rows"]:
        name = row["method"]
        if name.startswith("Oracle (") and name[8:-1] in METRIC_TITLES:
            name = f"Oracle ({METRIC_TITLES[name[8:-1]]})"
        passes = row.get("forward_passes")
        seconds = row.get("seconds_per_instruction")
        lines.append(
            "| "
            + " | ".join(
                [
                    row.get("category", ""),
                    name,
                    *(_cell(row, k, f) for k, _, f in COLUMNS),
                    "–" if passes is None else f"{passes:.0f}",
                    "–" if seconds is None else f"{seconds:.2f}",
                ]
            )
            + " |"
        )
    if table["differences"]:
        lines += ["", "Paired differences in the pick's mean oracle score (95% bootstrap interval):", ""]
        for diff in table["differences"]:
            low, high = diff["ci"]
            verdict = "above zero" if low > 0 else ("below zero" if high < 0 else "includes zero")
            lines.append(
                f"- {diff['method']} − {diff['versus']}: {diff['top1_oracle_diff']:+.3f} "
                f"[{low:+.3f}, {high:+.3f}] ({verdict})"
            )
    if missing:
        lines += ["", "Not run yet (no results in their run folders): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def compare_experiments(
    records: Sequence[Record],
    train: Sequence[Record] | None,
    dataset: str,
    split: str,
    oracle: str,
    experiments: Sequence[ExperimentRow],
    experiments_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    aggregations: Sequence[str] = ("max_logits", "bubble"),
    metric_keys: Sequence[str] = tuple(METRIC_TITLES),
    n_boot: int = 1000,
    seed: int = 0,
    versus: Sequence[str] = (),
) -> dict[str, Any]:
    """Write `comparison_<dataset>_<split>.{md,json}` and the Table 2 / Table 3 shapes of the same rows.

    Args:
        records: the split the experiments were evaluated on, scored with reference metrics (`make score`).
        train: its train split (chooses the ≥-columns' models); None: chosen on `records`.
        dataset: the data config's name.
        split: the evaluated split.
        oracle: what ranks the candidates (e.g. "gpt4_pref").
        experiments: the rows, in order; one whose run folder has no results is listed as not run.
        experiments_dir: where `<name>/eval/` folders live (outputs/experiments).
        output_dir: where to write.
        aggregations: PairRanker's aggregations to show.
        metric_keys: reference metrics to report (those the records carry).
        n_boot: bootstrap resamples.
        seed: bootstrap and bubble seed.
        versus: more rows every ranker gets a paired difference against (e.g. "PairRanker (gpt4_pref) +
            max_logits"), besides Random, Longest and the best single model.
    Returns:
        {"table": the comparison, "files": [paths], "missing": [experiments not run]}.
    """
    stem = f"{dataset}_{split}"
    rankers, missing, best_models = [], [], []
    for experiment in experiments:
        eval_dir = Path(experiments_dir) / experiment.name / "eval"
        if not (eval_dir / f"ranking_{stem}.json").is_file():
            log.warning("%s: no %s yet; listed as not run", eval_dir, f"ranking_{stem}.json")
            missing.append(experiment.name)
            continue
        rows, best_model = experiment_methods(eval_dir, stem, experiment.label, records, aggregations, seed)
        rankers += rows
        best_models.append(best_model)
    if not best_models:
        raise FileNotFoundError(f"no experiment of {dataset} has results under {experiments_dir}")
    if len(set(best_models)) > 1:
        raise ValueError(
            f"the experiments chose different best single models {sorted(set(best_models))}: "
            "they were trained on different train splits"
        )
    metrics = available_metrics(records, metric_keys)
    methods = [*baseline_rows(records, oracle, best_models[0], metrics), *rankers]
    compare_to = ["Random (expected)", "Longest", f"model: {best_models[0]}", *versus]
    table = ranking_table(records, oracle, best_models[0], methods, n_boot, seed, compare_to)
    table.update(dataset=dataset, split=split, experiments=[e.__dict__ for e in experiments], missing=missing)
    title = f"{dataset} {split}: rankers compared"
    output_dir = Path(output_dir)
    files = [
        write_text_atomic(output_dir / f"comparison_{stem}.md", render_comparison(table, title, missing)),
        write_json_atomic(output_dir / f"comparison_{stem}.json", table),
    ]
    named = named_models_for(train if train else records, oracle, dataset)
    paper = report_paper_tables(
        records,
        oracle,
        named,
        output_dir,
        stem,
        title,
        dataset=dataset,
        rankers=rankers,
        metric_keys=metrics,
        n_boot=n_boot,
        seed=seed,
    )
    return {"table": table, "files": [str(f) for f in files] + paper["files"], "missing": missing}


@dataclass
class ComparedDataset:
    """One dataset of `make eval`'s comparison (`datasets.<name>` in conf/compare.yaml).

    Attributes:
        split: the evaluated split.
        oracle: what ranks the candidates.
        scored_path: a `make score` folder holding the split with reference metrics.
        train_path: the dataset's folder (its train split chooses the ≥-columns' models).
        experiments: run folder name -> row label.
        versus: more rows every ranker gets a paired difference against.
    """

    split: str
    oracle: str
    scored_path: str
    train_path: str
    experiments: dict[str, str]
    versus: list[str] = field(default_factory=list)


def compare_datasets(
    datasets: Mapping[str, ComparedDataset],
    experiments_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    aggregations: Sequence[str] = ("max_logits", "bubble"),
    metric_keys: Sequence[str] = tuple(METRIC_TITLES),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """`compare_experiments` for every dataset with at least one finished experiment; the others are skipped."""
    results = {}
    for dataset, settings in datasets.items():
        experiments = [ExperimentRow(name, label) for name, label in settings.experiments.items()]
        if not any((Path(experiments_dir) / e.name / "eval").is_dir() for e in experiments):
            log.info("%s: no experiment has run yet; skipped", dataset)
            continue
        records = read_jsonl(find_split_file(settings.scored_path, settings.split))
        (train,) = load_candidates(settings.train_path, splits=("train",))
        results[dataset] = compare_experiments(
            records,
            train,
            dataset,
            settings.split,
            settings.oracle,
            experiments,
            experiments_dir,
            output_dir,
            aggregations,
            metric_keys,
            n_boot,
            seed,
            settings.versus,
        )
        log.info("%s: wrote %s", dataset, ", ".join(results[dataset]["files"]))
    return results
