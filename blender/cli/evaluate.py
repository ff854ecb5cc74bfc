"""Evaluate a ranker checkpoint (any of the four) on a split: `make eval CKPT=...` /
`python -m blender.cli.evaluate checkpoint=...`."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from blender.aggregation import forward_passes
from blender.cli.common import (
    choose_named_models,
    inference_settings,
    load_split,
    pick_best_model,
    to_dict,
    user_errors,
)
from blender.data.loading import find_split_file, read_jsonl
from blender.data.schema import Record, RecordError
from blender.evaluation.differences import paired_differences, render_differences
from blender.evaluation.evaluate import evaluate_ranker_with_methods
from blender.evaluation.paper_report import report_paper_tables
from blender.evaluation.paper_tables import available_metrics
from blender.evaluation.ranking import Method
from blender.evaluation.report import (
    print_table,
    read_pair_logits,
    write_candidate_scores,
    write_pair_logits,
    write_report,
)
from blender.files import write_json_atomic, write_text_atomic
from blender.fuser.evaluate import (
    FUSED_FIELD,
    ZERO_SHOT_FIELD,
    FusedAnswers,
    fuse_records,
    fused_row_name,
    judge_fused,
    load_fused,
    save_fused,
)
from blender.fuser.model import GenerationSettings, GenFuser
from blender.fuser.quality import answer_statistics
from blender.fuser.topk import rankings_from_scores
from blender.metrics.base import build_metrics
from blender.metrics.judge import PairwiseJudge
from blender.metrics.scoring import read_scored, score_split
from blender.rankers.loading import Ranker, load_ranker

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


def run(cfg: DictConfig) -> dict:
    data = cfg.data
    checkpoint = Path(cfg.checkpoint)
    ranker = load_ranker(checkpoint)
    records = load_split(data, cfg.split, data.limit_val)
    train = load_split(data, data.train_split, data.limit_train)
    return evaluate_and_report(cfg, ranker, records, train, cfg.split, Path(cfg.output_dir), str(checkpoint))


def evaluate_and_report(
    cfg: DictConfig,
    ranker: Ranker,
    records: list[Record],
    train: list[Record],
    split: str,
    output_dir: Path,
    checkpoint: str,
) -> dict:
    """The ranking table (printed, Markdown, JSON), the pair logits (.npz; a pointwise ranker's candidate scores
    instead) and, when the split carries reference metrics, Table 2 / Table 3. Shared by `make eval` and the end
    of `make train-ranker`."""
    data = cfg.data
    best_model = pick_best_model(train, data)
    logits_file = output_dir / f"pair_logits_{data.name}_{split}.npz"
    # `make eval` right after `make train-ranker` reads the same checkpoint's matrices instead of recomputing
    # them (minutes on a CPU); any change of records, weights or precision recomputes.
    saved = read_pair_logits(logits_file, records, checkpoint, cfg.inference.mixed_precision)
    table, rankers, matrices = evaluate_ranker_with_methods(
        ranker,
        records,
        best_model,
        data.oracle,
        list(cfg.eval.aggregations),
        inference_settings(cfg.inference),
        cfg.eval.bootstrap_samples,
        cfg.eval.seed,
        saved_logits=saved,
    )
    table.update(dataset=data.name, split=split, checkpoint=checkpoint)
    title = f"{data.name} {split}: {getattr(ranker, 'label', 'PairRanker')} ({checkpoint})"
    print_table(table, title)
    markdown, _ = write_report(table, output_dir, f"ranking_{data.name}_{split}", title)
    ids, models = [r.id for r in records], [r.models for r in records]
    if matrices is not None and saved is None:
        # The full matrix's time per instruction (each aggregation's row scales it by its share of passes).
        first = rankers[0]
        n_candidates = int(sum(len(r.candidates) for r in records) / len(records))  # as ranker_methods
        seconds = first.seconds * forward_passes("max_logits", n_candidates) / first.forward_passes
        write_pair_logits(logits_file, ids, models, matrices, seconds, cfg.inference.mixed_precision)
    else:
        write_candidate_scores(
            output_dir / f"candidate_scores_{data.name}_{split}.npz", ids, models, list(rankers[0].scores)
        )
    log.info("wrote %s", markdown)
    zero_shot_wanted = bool(cfg.get("fuse", {}).get("zero_shot", False))
    if cfg.get("fuser_checkpoint") or zero_shot_wanted:
        # The fused rows: the fuser reads this ranker's top-K (MaxLogits, the paper's) of the eval split.
        pick = (
            next(m for m in rankers if m.name.endswith("max_logits"))
            if any(m.name.endswith("max_logits") for m in rankers)
            else rankers[0]
        )
        fuser = GenFuser.load(cfg.fuser_checkpoint, _generation(cfg)) if cfg.get("fuser_checkpoint") else None
        zero_shot = build_zero_shot(cfg) if zero_shot_wanted else None
        table["fused"] = report_fused(
            cfg,
            fuser,
            str(cfg.get("fuser_checkpoint")),
            records,
            rankings_from_scores(pick.scores),
            cfg.fuse.k,
            "ranker",
            rankers,
            train,
            split,
            output_dir,
            zero_shot=zero_shot,
        )
    elif cfg.tables.enabled:
        table["paper_tables"] = write_paper_tables(cfg, records, rankers, title, train, split, output_dir)
    return table


def _generation(cfg: DictConfig) -> GenerationSettings | None:
    """Decoding from `fuse.generation`, else the settings saved with the fuser."""
    settings = cfg.get("fuse", {}).get("generation") if "fuse" in cfg else None
    return GenerationSettings(**to_dict(settings)) if settings is not None else None


def build_zero_shot(cfg: DictConfig) -> GenFuser:
    """The `fuser` config's pretrained model with its prompt and decoding, never trained on fusion: the
    zero-shot row (`fuse.zero_shot=true`). No adapters: untrained LoRA adapters change nothing."""
    if cfg.get("fuser") is None or cfg.fuser.get("name_or_path") is None:
        raise ValueError("fuse.zero_shot=true needs a pretrained fuser config (fuser=gemma3_270m)")
    fuser: GenFuser = instantiate(cfg.fuser, finetuning={"mode": "full"}, _convert_="all")
    fuser.generation = _generation(cfg) or fuser.generation
    return fuser


def zero_shot_id(fuser: GenFuser) -> str:
    """What the zero-shot answers depend on: the base model, its prompt packing and its decoding."""
    settings = json.dumps(
        {"packing": asdict(fuser.packing), "generation": asdict(fuser.generation)}, sort_keys=True
    )
    return f"zero-shot:{fuser.base}:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def fused_answers(
    cfg: DictConfig,
    fuser: GenFuser,
    fuser_id: str,
    records: list[Record],
    rankings: list[list[int]],
    k: int,
    row_name: str,
    field: str,
    output_dir: Path,
    split: str,
    also_look_in: Sequence[Path] = (),
) -> FusedAnswers:
    """One answer set: answers saved before for the same records, top-K and fuser (in `output_dir` or
    `also_look_in`), else fused now and saved; placed by `cfg.judge` when set."""
    answers_file = output_dir / f"{field}_{cfg.data.name}_{split}.jsonl"
    texts = None
    for folder in dict.fromkeys([output_dir, *also_look_in]):
        texts = texts or load_fused(folder / answers_file.name, records, rankings, k, fuser_id)
    if texts is None:
        began = time.perf_counter()
        texts = fuse_records(fuser, records, rankings, k)
        save_fused(answers_file, records, rankings, k, texts, fuser_id)
        log.info("wrote %s (%d answers in %.0f s)", answers_file, len(texts), time.perf_counter() - began)
    gpt_ranks = None
    if cfg.get("judge") is not None:
        with PairwiseJudge(instantiate(cfg.judge)) as judge:
            gpt_ranks = judge_fused(records, texts, judge)
    return FusedAnswers(row_name, texts, gpt_ranks, field)


def report_fused(
    cfg: DictConfig,
    fuser: GenFuser | None,
    fuser_checkpoint: str,
    records: list[Record],
    rankings: list[list[int]],
    k: int,
    selection: str,
    rankers: list[Method],
    train: list[Record] | None,
    split: str,
    output_dir: Path,
    zero_shot: GenFuser | None = None,
) -> dict:
    """Fuse each record's top-K (or reuse answers saved for the same top-K and fuser), score them with
    `cfg.metrics`, place them with `cfg.judge` when set, and write Table 2 / Table 3 with the fused row; with
    `zero_shot`, its row too, and the paired difference between the two. Shared by `make train-fuser` and
    `make eval fuser_checkpoint=... [fuse.zero_shot=true]`."""
    data = cfg.data
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    answer_sets = []
    if fuser is not None:
        # Answers written by `make train-fuser` beside the fuser (`<run>/eval`) are reused.
        answer_sets.append(
            fused_answers(
                cfg,
                fuser,
                fuser_checkpoint,
                records,
                rankings,
                k,
                fused_row_name(k, selection),
                FUSED_FIELD,
                output_dir,
                split,
                [Path(fuser_checkpoint).parent / "eval"],
            )
        )
    if zero_shot is not None:
        answer_sets.append(
            fused_answers(
                cfg,
                zero_shot,
                zero_shot_id(zero_shot),
                records,
                rankings,
                k,
                fused_row_name(k, selection, zero_shot=True),
                ZERO_SHOT_FIELD,
                output_dir,
                split,
            )
        )
    if not answer_sets:
        raise ValueError("report_fused needs a fuser or a zero-shot fuser")
    seconds["fuse"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    quality = {
        a.row_name: answer_statistics(a.texts, [r.output for r in records]).as_dict() for a in answer_sets
    }
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
    checkpoint_name = fuser_checkpoint if fuser is not None else zero_shot_id(zero_shot)
    title = f"{data.name} {split}: {' / '.join(a.row_name for a in answer_sets)} ({checkpoint_name})"
    # Candidates scored by `make train-fuser` beside the fuser: `make eval` reads them instead of scoring again.
    scored_beside_fuser = Path(fuser_checkpoint).parent / "eval" / f"scored_{data.name}_{split}.jsonl"
    report = write_paper_tables(
        cfg, records, rankers, title, train, split, output_dir, answer_sets, [scored_beside_fuser]
    )
    seconds["score_and_tables"] = round(time.perf_counter() - began, 1)
    return {
        "answers": [str(output_dir / f"{a.field}_{data.name}_{split}.jsonl") for a in answer_sets],
        "rows": [a.row_name for a in answer_sets],
        "quality": quality,
        "paper_tables": report,
        "seconds": seconds,
    }


def scored_records(cfg: DictConfig, records: list[Record], split: str) -> list[Record]:
    """The eval split with reference-metric scores: from `tables.scores_path` (a `make score` folder) when set,
    checked to hold the same records in the same order, else the eval split itself."""
    if cfg.tables.scores_path is None:
        return records
    path = find_split_file(cfg.tables.scores_path, split)
    scored = read_jsonl(path, limit=len(records))
    if [r.id for r in scored] != [r.id for r in records]:
        raise RecordError(
            f"{path}: its records are not the eval split's ({len(scored)} vs {len(records)} records, or other ids "
            f"or order): score the same split with the same limit (make score ARGS='data={cfg.data.name} "
            f"split={split}')"
        )
    return scored


def write_paper_tables(
    cfg: DictConfig,
    records: list[Record],
    rankers: list[Method],
    title: str,
    train: list[Record] | None,
    split: str,
    output_dir: Path,
    fused: FusedAnswers | Sequence[FusedAnswers] | None = None,
    scored_elsewhere: Sequence[Path] = (),
) -> dict | None:
    """Table 2 / Table 3 next to the ranking table, when the eval split's candidates carry reference metrics;
    with `fused`, each answer set is scored by `cfg.metrics` and gets its Table 2 row (two sets: their paired
    difference too). Candidates without `make score` output are scored here, unless one of `scored_elsewhere`
    already holds them scored."""
    data, tables = cfg.data, to_dict(cfg.tables)
    scored = scored_records(cfg, records, split)
    extra_outputs, metric_keys = None, tables["metrics"]
    answer_sets = [fused] if isinstance(fused, FusedAnswers) else list(fused or [])
    if answer_sets:
        metrics = build_metrics(to_dict(cfg.metrics))
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
            tables["metrics"],
            data.name,
            split,
            data.name,
        )
        return None
    named = choose_named_models(data, tables["named_models"], scored, train)
    report = report_paper_tables(
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
        n_boot=cfg.eval.bootstrap_samples,
        seed=cfg.eval.seed,
    )
    if len(answer_sets) == 2:
        first, second = answer_sets
        differences = paired_differences(
            scored, first.field, second.field, report["metrics"], cfg.eval.bootstrap_samples, cfg.eval.seed
        )
        stem = output_dir / f"fused_difference_{data.name}_{split}"
        write_json_atomic(
            stem.with_suffix(".json"),
            {"first": first.row_name, "second": second.row_name, "metrics": differences},
        )
        write_text_atomic(
            stem.with_suffix(".md"),
            render_differences(
                differences, first.row_name, second.row_name, f"{data.name} {split}: fused answers compared"
            ),
        )
        report["differences"] = differences
        report["files"] += [str(stem.with_suffix(".json")), str(stem.with_suffix(".md"))]
    log.info("wrote %s", ", ".join(report["files"]))
    return report


if __name__ == "__main__":
    main()
