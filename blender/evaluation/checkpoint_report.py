"""Report a ranker checkpoint on a split, and the fused rows of its top-K: `make eval`, and the end of
`make train-ranker` and `make train-fuser`.

The ranking table and the saved scores come first (`report_ranker`); with a fuser, its answers (and, with
`fuse.zero_shot`, those of its pretrained model never trained on fusion) are written, scored, placed by a judge
when one is set, and reported in Table 2 with their answer statistics and paired difference (`report_fused`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from blender.aggregation import forward_passes
from blender.devices import resolve_precision
from blender.distributed import is_main_process, join_launched_run
from blender.evaluation.methods import evaluate_ranker_with_methods
from blender.evaluation.model_prior import PRIOR_FILE, ModelPrior, first_oracle_of
from blender.evaluation.preference import report_preference
from blender.evaluation.ranking import Method
from blender.evaluation.report import print_table, write_report
from blender.evaluation.reporting import FuseSettings, ReportSettings, best_single_model, report_split_tables
from blender.files import write_json_atomic
from blender.fuser.fused import (
    FUSED_FIELD,
    ZERO_SHOT_FIELD,
    FusedAnswers,
    decoding_id,
    fuse_records,
    fused_row_name,
    judge_fused,
    load_fused,
    save_fused,
)
from blender.fuser.model import GenFuser
from blender.fuser.quality import answer_statistics
from blender.fuser.topk import rankings_from_scores
from blender.metrics.judge import PairwiseJudge
from blender.rankers.precision import saved_precision_name
from blender.rankers.registry import kind_of, load_ranker
from blender.rankers.saved_scores import read_pair_logits, write_candidate_scores, write_pair_logits
from blender.records import DataSettings, Record

log = logging.getLogger(__name__)


def report_ranker(
    ranker: Any,
    records: list[Record],
    train: Sequence[Record],
    data: DataSettings,
    split: str,
    output_dir: str | os.PathLike,
    checkpoint: str | os.PathLike,
    report: ReportSettings,
    fuser: GenFuser | None = None,
    fuser_checkpoint: str | os.PathLike | None = None,
    fuse: FuseSettings | None = None,
    zero_shot: GenFuser | None = None,
) -> dict:
    """The ranking table (printed, Markdown, JSON), the saved scores (a pairwise ranker's N×N logits, a pointwise
    one's N scores) and, when the split carries reference metrics, Table 2 / Table 3; with `fuser` (and/or the
    untrained `zero_shot` fuser), the fused rows of this ranker's top-K instead.

    Returns:
        The ranking table, with "fused" or "paper_tables" added when written.
    """
    output_dir, checkpoint = Path(output_dir), str(checkpoint)
    if data.format == "preference":
        return report_preference(ranker, records, data, split, output_dir, checkpoint, report)
    kind = kind_of(ranker)
    best_model = best_single_model(train, data)
    inference = report.inference
    logits_file = output_dir / f"pair_logits_{data.name}_{split}.npz"
    # `make eval` right after `make train-ranker` reads the same checkpoint's matrices instead of recomputing
    # them (minutes on a CPU); any change of records, weights or precision recomputes.
    # "auto" is saved as what it ran at here, so a machine that resolves it otherwise recomputes.
    precision = saved_precision_name(resolve_precision(inference.precision, next(ranker.parameters()).device))
    saved = read_pair_logits(logits_file, records, checkpoint, precision) if kind.pairwise else None
    # The prior is read off train by the evaluation's oracle, or by val_oracle where train lacks it (as the best
    # single model is); with neither, there is no prior row.
    use_prior = report.evaluation.model_prior
    prior_oracle = first_oracle_of(train, [data.oracle, data.val_oracle]) if use_prior else None
    if use_prior and prior_oracle is None:
        log.info("train carries neither %s nor %s: no model prior row", data.oracle, data.val_oracle)
    table, rankers, matrices, prior = evaluate_ranker_with_methods(
        ranker,
        records,
        best_model,
        data.oracle,
        list(report.evaluation.aggregations),
        inference,
        report.evaluation.bootstrap_samples,
        report.evaluation.seed,
        saved_logits=saved,
        prior_train=train if prior_oracle is not None else None,
        prior_folds=report.evaluation.model_prior_folds,
        prior_train_oracle=prior_oracle,
    )
    if prior is not None and is_main_process():
        save_prior(prior, output_dir, checkpoint, data, split)
    table.update(dataset=data.name, split=split, checkpoint=checkpoint, ranker=kind.name)
    if not is_main_process():
        # The other processes of a launched run computed their shard of the scores; the main one writes the
        # report and fuses (generation is not sharded: it runs on the main process only).
        return table
    title = f"{data.name} {split}: {getattr(ranker, 'label', kind.name)} ({checkpoint})"
    print_table(table, title)
    markdown, _ = write_report(table, output_dir, f"ranking_{data.name}_{split}", title)
    ids, models = [r.id for r in records], [r.models for r in records]
    if matrices is not None and saved is None:
        # The full matrix's time per instruction (each aggregation's row scales it by its share of passes).
        first = rankers[0]
        n_candidates = int(sum(len(r.candidates) for r in records) / len(records))  # as ranker_methods
        seconds = first.seconds * forward_passes("max_logits", n_candidates) / first.forward_passes
        write_pair_logits(logits_file, ids, models, matrices, seconds, precision)
    elif matrices is None:
        scores_file = output_dir / f"candidate_scores_{data.name}_{split}.npz"
        write_candidate_scores(scores_file, ids, models, list(rankers[0].scores))
    log.info("wrote %s", markdown)
    if fuser is not None or zero_shot is not None:
        # The fused rows: the fuser reads this ranker's top-K (MaxLogits, the paper's) of the split.
        pick = next((m for m in rankers if m.name.endswith("max_logits")), rankers[0])
        fuse = fuse or FuseSettings()
        rankings = rankings_from_scores(pick.scores)
        table["fused"] = report_fused(
            fuser,
            str(fuser_checkpoint),
            records,
            rankings,
            fuse.k,
            "ranker",
            rankers,
            train,
            data,
            split,
            output_dir,
            report,
            zero_shot,
            ranker_label=getattr(ranker, "label", kind.name),
        )
    elif report.tables.enabled:
        table["paper_tables"] = report_split_tables(
            records, rankers, title, train, data, split, output_dir, report
        )
    return table


def save_prior(prior: ModelPrior, output_dir: Path, checkpoint: str, data: DataSettings, split: str) -> None:
    """Write the fitted prior beside the report; on the validation split, also into the checkpoint folder (when it
    is a local folder this process may write), so the ranker and its prior travel together to new data."""
    prior.fitted_on = f"{data.name} {split}: {prior.fitted_on}"
    prior.save(output_dir / f"model_prior_{data.name}_{split}.json")
    folder = Path(checkpoint)
    if split == data.val_split and folder.is_dir() and os.access(folder, os.W_OK):
        prior.save(folder / PRIOR_FILE)
        log.info("wrote %s (weight %.2f)", folder / PRIOR_FILE, prior.weight)


def zero_shot_id(fuser: GenFuser) -> str:
    """What zero-shot answers depend on: the base model, its prompt packing and its decoding."""
    settings = json.dumps(
        {"packing": asdict(fuser.packing), "generation": asdict(fuser.generation)}, sort_keys=True
    )
    return f"zero-shot:{fuser.base}:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def fused_answers(
    fuser: GenFuser,
    fuser_id: str,
    records: list[Record],
    rankings: list[list[int]],
    k: int,
    row_name: str,
    field: str,
    data: DataSettings,
    split: str,
    output_dir: Path,
    report: ReportSettings,
    also_look_in: Sequence[Path] = (),
) -> FusedAnswers:
    """One answer set: answers saved before for the same records, top-K and fuser (in `output_dir` or
    `also_look_in`), else fused now and saved; placed by `report.judge` when set."""
    answers_file = output_dir / f"{field}_{data.name}_{split}.jsonl"
    decoding = decoding_id(fuser.generation)
    texts = None
    for folder in dict.fromkeys([output_dir, *also_look_in]):
        texts = texts or load_fused(folder / answers_file.name, records, rankings, k, fuser_id, decoding)
    if texts is None:
        began = time.perf_counter()
        texts = fuse_records(fuser, records, rankings, k)
        save_fused(answers_file, records, rankings, k, texts, fuser_id, decoding)
        log.info("wrote %s (%d answers in %.0f s)", answers_file, len(texts), time.perf_counter() - began)
    gpt_ranks = None
    if report.judge is not None:
        with PairwiseJudge(report.judge) as judge:
            gpt_ranks = judge_fused(records, texts, judge)
    return FusedAnswers(row_name, texts, gpt_ranks, field)


def report_fused(
    fuser: GenFuser | None,
    fuser_checkpoint: str,
    records: list[Record],
    rankings: list[list[int]],
    k: int,
    selection: str,
    rankers: Sequence[Method],
    train: Sequence[Record] | None,
    data: DataSettings,
    split: str,
    output_dir: str | os.PathLike,
    report: ReportSettings,
    zero_shot: GenFuser | None = None,
    ranker_label: str = "PairRanker",
) -> dict:
    """Fuse each record's top-K (or reuse answers saved for the same top-K and fuser), score them with
    `report.metric_set`, place them with `report.judge` when set, and write Table 2 / Table 3 with the fused
    row; with `zero_shot`, its row too, and the paired difference between the two. Shared by `make train-fuser`
    and `make eval fuser_checkpoint=... [fuse.zero_shot=true]`."""
    output_dir = Path(output_dir)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    answer_sets = []
    if fuser is not None:
        # Answers written by `make train-fuser` beside the fuser (`<run>/eval`) are reused.
        beside = [Path(fuser_checkpoint).parent / "eval"]
        answer_sets.append(
            fused_answers(
                fuser,
                fuser_checkpoint,
                records,
                rankings,
                k,
                fused_row_name(k, selection, ranker_label=ranker_label),
                FUSED_FIELD,
                data,
                split,
                output_dir,
                report,
                beside,
            )
        )
    if zero_shot is not None:
        answer_sets.append(
            fused_answers(
                zero_shot,
                zero_shot_id(zero_shot),
                records,
                rankings,
                k,
                fused_row_name(k, selection, zero_shot=True, ranker_label=ranker_label),
                ZERO_SHOT_FIELD,
                data,
                split,
                output_dir,
                report,
            )
        )
    if not answer_sets:
        raise ValueError("report_fused needs a fuser or a zero-shot fuser")
    seconds["fuse"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    references = [r.output for r in records]
    quality = {a.row_name: answer_statistics(a.texts, references).as_dict() for a in answer_sets}
    for row, stats in quality.items():
        log.info(
            "%s: %d distinct of %d answers, %.0f%% with a repeated 10-gram loop, median %.0f words "
            "(references %.0f: ratio %.2f)",
            row,
            stats["n_distinct"],
            stats["n_answers"],
            stats["loop_pct"],
            stats["median_words"],
            stats["reference_median_words"],
            stats["length_ratio"],
        )
    write_json_atomic(output_dir / f"fused_quality_{data.name}_{split}.json", quality)
    named = fuser_checkpoint if fuser is not None else zero_shot_id(zero_shot)
    title = f"{data.name} {split}: {' / '.join(a.row_name for a in answer_sets)} ({named})"
    # Candidates scored by `make train-fuser` beside the fuser: `make eval` reads them instead of scoring again.
    scored_beside_fuser = Path(fuser_checkpoint).parent / "eval" / f"scored_{data.name}_{split}.jsonl"
    paper = report_split_tables(
        records, rankers, title, train, data, split, output_dir, report, answer_sets, [scored_beside_fuser]
    )
    seconds["score_and_tables"] = round(time.perf_counter() - began, 1)
    return {
        "answers": [str(output_dir / f"{a.field}_{data.name}_{split}.jsonl") for a in answer_sets],
        "rows": [a.row_name for a in answer_sets],
        "quality": quality,
        "paper_tables": paper,
        "seconds": seconds,
    }


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: DataSettings,
    split: str,
    output_dir: str | os.PathLike,
    report: ReportSettings,
    fuser_checkpoint: str | os.PathLike | None = None,
    fuse: FuseSettings | None = None,
    zero_shot: GenFuser | None = None,
) -> dict:
    """`make eval`: load a ranker checkpoint (any kind) and report it on `split`; with `fuser_checkpoint`, the
    fused row of its top-K too; with `zero_shot` (the `fuser` config's pretrained model), its row beside it."""
    join_launched_run()  # `accelerate launch -m blender.cli.evaluate`: each process scores its shard
    ranker = load_ranker(checkpoint)
    records = data.load(split, data.limit_val)
    train = data.load(data.train_split, data.limit_train)
    fuse = fuse or FuseSettings()
    fuser = GenFuser.load(fuser_checkpoint) if fuser_checkpoint is not None else None
    # fuse.generation overrides the named fields of each fuser's own decoding, keeping the rest.
    for model in (fuser, zero_shot):
        if model is not None and fuse.generation:
            model.generation = replace(model.generation, **fuse.generation)
    return report_ranker(
        ranker,
        records,
        train,
        data,
        split,
        output_dir,
        checkpoint,
        report,
        fuser,
        fuser_checkpoint,
        fuse,
        zero_shot,
    )
