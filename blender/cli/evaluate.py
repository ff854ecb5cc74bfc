"""Evaluate a ranker checkpoint (any of the four) on a split: `make eval CKPT=...` /
`python -m blender.cli.evaluate checkpoint=...`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
from blender.evaluation.evaluate import evaluate_ranker_with_methods
from blender.evaluation.paper_report import report_paper_tables
from blender.evaluation.paper_tables import available_metrics
from blender.evaluation.preference import pairwise_accuracy, write_preference_report
from blender.evaluation.ranking import Method
from blender.evaluation.report import (
    print_table,
    read_pair_logits,
    write_candidate_scores,
    write_pair_logits,
    write_report,
)
from blender.fuser.evaluate import (
    FUSED_FIELD,
    FusedAnswers,
    fuse_records,
    fused_row_name,
    judge_fused,
    load_fused,
    save_fused,
)
from blender.fuser.model import GenerationSettings, GenFuser
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
    if data.get("format", "mixinstruct") == "preference":
        return evaluate_preference(cfg, ranker, records, split, output_dir, checkpoint)
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
    if cfg.get("fuser_checkpoint"):
        # The fused row: the fuser reads this ranker's top-K (MaxLogits, the paper's) of the eval split.
        pick = (
            next(m for m in rankers if m.name.endswith("max_logits"))
            if any(m.name.endswith("max_logits") for m in rankers)
            else rankers[0]
        )
        fuser = GenFuser.load(cfg.fuser_checkpoint, _generation(cfg))
        table["fused"] = report_fused(
            cfg,
            fuser,
            str(cfg.fuser_checkpoint),
            records,
            rankings_from_scores(pick.scores),
            cfg.fuse.k,
            "ranker",
            rankers,
            train,
            split,
            output_dir,
        )
    elif cfg.tables.enabled:
        table["paper_tables"] = write_paper_tables(cfg, records, rankers, title, train, split, output_dir)
    return table


def evaluate_preference(
    cfg: DictConfig, ranker: Ranker, records: list[Record], split: str, output_dir: Path, checkpoint: str
) -> dict:
    """Pairwise accuracy on preference pairs (and Longest's), written as `pairwise_<data>_<split>.{json,md}`."""
    result = pairwise_accuracy(
        ranker, records, inference_settings(cfg.inference), cfg.eval.bootstrap_samples, cfg.eval.seed
    )
    label = getattr(ranker, "label", "PairRanker")
    result.update(method=label, dataset=cfg.data.name, split=split, checkpoint=checkpoint)
    low, high = result["interval"]
    title = f"{cfg.data.name} {split}: {label} ({checkpoint})"
    markdown = write_preference_report(result, output_dir, f"pairwise_{cfg.data.name}_{split}", title)
    log.info(
        "%s: pairwise accuracy %.3f [%.3f, %.3f] on %d pairs (Longest %.3f); wrote %s",
        title,
        result["pairwise_accuracy"],
        low,
        high,
        result["n_pairs"],
        result["longest_accuracy"],
        markdown,
    )
    return result


def _generation(cfg: DictConfig) -> GenerationSettings | None:
    """Decoding from `fuse.generation` (or the fuser config's), else the settings saved with the fuser."""
    settings = cfg.get("fuse", {}).get("generation") if "fuse" in cfg else None
    if settings is None and "fuser" in cfg:
        settings = cfg.fuser.get("generation")
    return GenerationSettings(**to_dict(settings)) if settings is not None else None


def report_fused(
    cfg: DictConfig,
    fuser: GenFuser,
    fuser_checkpoint: str,
    records: list[Record],
    rankings: list[list[int]],
    k: int,
    selection: str,
    rankers: list[Method],
    train: list[Record] | None,
    split: str,
    output_dir: Path,
) -> dict:
    """Fuse each record's top-K (or reuse answers saved for the same top-K and fuser), score them with
    `cfg.metrics`, place them with `cfg.judge` when set, and write Table 2 / Table 3 with the fused row.
    Shared by `make train-fuser` and `make eval fuser_checkpoint=...`."""
    data = cfg.data
    answers_file = output_dir / f"fused_{data.name}_{split}.jsonl"
    texts = None
    # Answers written here before, or by `make train-fuser` beside the fuser (`<run>/eval`), for the same top-K.
    for saved in dict.fromkeys([answers_file, Path(fuser_checkpoint).parent / "eval" / answers_file.name]):
        texts = texts or load_fused(saved, records, rankings, k, fuser_checkpoint)
    if texts is None:
        texts = fuse_records(fuser, records, rankings, k)
        save_fused(answers_file, records, rankings, k, texts, fuser_checkpoint)
        log.info("wrote %s", answers_file)
    gpt_ranks = None
    if cfg.get("judge") is not None:
        with PairwiseJudge(instantiate(cfg.judge)) as judge:
            gpt_ranks = judge_fused(records, texts, judge)
    fused = FusedAnswers(fused_row_name(k, selection), texts, gpt_ranks)
    title = f"{data.name} {split}: {fused.row_name} ({fuser_checkpoint})"
    # Candidates scored by `make train-fuser` beside the fuser: `make eval` reads them instead of scoring again.
    scored_beside_fuser = Path(fuser_checkpoint).parent / "eval" / f"scored_{data.name}_{split}.jsonl"
    report = write_paper_tables(
        cfg, records, rankers, title, train, split, output_dir, fused, [scored_beside_fuser]
    )
    return {"answers": str(answers_file), "row": fused.row_name, "paper_tables": report}


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
    fused: FusedAnswers | None = None,
    scored_elsewhere: Sequence[Path] = (),
) -> dict | None:
    """Table 2 / Table 3 next to the ranking table, when the eval split's candidates carry reference metrics;
    with `fused`, its answers are scored by `cfg.metrics` and get their Table 2 row. Candidates without
    `make score` output are scored here, unless one of `scored_elsewhere` already holds them scored."""
    data, tables = cfg.data, to_dict(cfg.tables)
    scored = scored_records(cfg, records, split)
    extra_outputs, metric_keys = None, tables["metrics"]
    if fused is not None:
        metrics = build_metrics(to_dict(cfg.metrics))
        metric_keys = [m for m in metric_keys if m in metrics]
        if not available_metrics(scored, metric_keys):
            # No `make score` output for this split: score its candidates here too (cached beside the report).
            scored = read_scored(scored_elsewhere, scored, list(metrics)) or score_split(
                scored, metrics, output_dir / f"scored_{data.name}_{split}.jsonl"
            )
        scored = fused.attach(scored, metrics)
        extra_outputs = {fused.row_name: FUSED_FIELD}
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
    log.info("wrote %s", ", ".join(report["files"]))
    return report


if __name__ == "__main__":
    main()
