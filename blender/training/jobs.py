"""The jobs behind `make train-ranker` and `make train-fuser`: load the data, build the model, train, evaluate.

Each takes one typed job description (what the Hydra config holds, as plain settings objects), so the whole
"train, then evaluate" runs from Python without Hydra; `blender.cli` only turns a config into a job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.utils import set_seed
from torch import nn

from blender.devices import resolve_device, resolve_precision
from blender.distributed import barrier, is_main_process, join_launched_run
from blender.evaluation.checkpoint_report import report_fused, report_ranker
from blender.evaluation.ranking import Method
from blender.evaluation.reporting import ReportSettings, best_single_model
from blender.files import file_digest, write_json_atomic
from blender.fuser.model import GenerationSettings, GenFuser
from blender.fuser.topk import TopKSettings, ranker_rankings
from blender.fuser.training import fuser_examples, train_fuser
from blender.rankers.backbone import BackboneSettings
from blender.rankers.predict import InferenceSettings
from blender.rankers.registry import RankerKind, get_kind, load_ranker
from blender.records import DataSettings, find_split_file
from blender.settings import SettingsError
from blender.training.checkpoints import flatten_settings, run_folder_lock
from blender.training.loop import LoggerSettings, TrainSettings
from blender.training.rankers import train_ranker

log = logging.getLogger(__name__)


@dataclass
class RankerSettings:
    """Which ranker and how its examples are drawn (`conf/ranker/*.yaml`).

    Attributes:
        kind: a key of `blender.rankers.registry.RANKERS` (or `package.module:KIND`).
        model: the kind's model settings (its constructor's arguments besides backbone and tasks).
        sampling: the kind's `sampling` settings (None for a kind with nothing to train).
        init_from: a checkpoint folder or hub id to start training from (a blender run's best/, llm-blender/PairRM,
            llm-blender/PairRM-hf): its weights and settings, a fresh optimizer at step 0 (unlike
            `trainer.resume`, which continues an interrupted run). None: a new model.
    """

    kind: str = "pairranker"
    model: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] | None = None
    init_from: str | None = None


@dataclass
class RankerJob:
    """Train a ranker, then evaluate its best checkpoint (`make train-ranker`)."""

    data: DataSettings
    backbone: BackboneSettings
    ranker: RankerSettings
    trainer: TrainSettings
    output_dir: Path
    report: ReportSettings = field(default_factory=ReportSettings)
    logger: LoggerSettings = field(default_factory=LoggerSettings)
    evaluate_after_training: bool = True
    run_config: dict[str, Any] | None = None


# Settings that change no weight: how often it logs and saves, bars, and how to resume.
_BOOKKEEPING = ("show_progress", "log_every_steps", "save_every_steps", "resume")


def data_fingerprint(data: DataSettings, splits: Sequence[str]) -> dict[str, Any]:
    """The data settings and, per split read, the sha256 of its file (or the hub id it comes from)."""
    files = {}
    for split in dict.fromkeys(splits):
        if data.path is None:
            files[split] = f"hub:{data.hub_id}"
        else:
            files[split] = file_digest(find_split_file(data.path, split))
    for folder in data.extra_train:
        files[f"extra_train:{folder}"] = file_digest(
            find_split_file(folder, data.train_split, "data.extra_train")
        )
    return {"data": asdict(data), "data_files": files}


def run_fingerprint(
    data: DataSettings, trainer: TrainSettings, inference: InferenceSettings, **model: Any
) -> dict:
    """What shapes a training run, flat: the data (and its files' digests), the model's settings, the trainer's
    (but its bookkeeping) and the precision validation runs at."""
    trainer_settings = {k: v for k, v in asdict(trainer).items() if k not in _BOOKKEEPING}
    # "auto" as it resolves on this machine: resuming where it resolves otherwise would train differently.
    device = resolve_device("auto")
    if trainer_settings.get("mixed_precision") == "auto":
        trainer_settings["mixed_precision"] = resolve_precision("auto", device, fp32_name="no")
    sections = {
        **data_fingerprint(data, (data.train_split, data.val_split)),
        **model,
        "trainer": trainer_settings,
        "inference": {"precision": resolve_precision(inference.precision, device)},
    }
    return flatten_settings(json.loads(json.dumps(sections, default=str)))


@contextlib.contextmanager
def _hold_run_folder(output_dir: Path) -> Iterator[None]:
    """The run folder's lock, taken by the main process only (every process of a multi-process run shares it)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with run_folder_lock(output_dir):
        yield


def train_and_evaluate_ranker(job: RankerJob) -> dict[str, Any]:
    """Train `job.ranker` on the train split (validating on val), then report the best checkpoint on the eval split.

    Returns:
        The training summary, with the evaluation's ranking table under "eval".
    """
    with _hold_run_folder(Path(job.output_dir)):
        return _train_and_evaluate_ranker(job)


def _train_and_evaluate_ranker(job: RankerJob) -> dict[str, Any]:
    data, output_dir = job.data, Path(job.output_dir)
    join_launched_run()  # so a kind with nothing to train still shards its evaluation
    train = data.load(data.train_split, data.limit_train)
    val = data.load(data.val_split, data.limit_val)
    eval_records = val if data.eval_split == data.val_split else None
    fit_records = train
    if data.extra_train:
        if eval_records is None:
            eval_records = data.load(data.eval_split)
        extra = data.load_extra_train([*val, *eval_records], data.limit_train)
        log.info("data.extra_train: %d more training instructions from %s", len(extra), data.extra_train)
        fit_records = train + extra
    best_model = best_single_model(train, data)
    kind = get_kind(job.ranker.kind)
    sampling = kind.sampling(**(job.ranker.sampling or {})) if kind.trainable else None
    # Seeded before the model is built: the head and the new marker embeddings start from random weights, and
    # drawn from an unseeded process they made two runs of one config differ by as much as the recipes did.
    set_seed(job.trainer.seed)
    if job.ranker.init_from is not None:
        ranker = initial_ranker(job.ranker.init_from, kind, list(data.signals), job.ranker.model)
    else:
        ranker = kind.build(dict(job.ranker.model), job.backbone, list(data.signals))
    if not kind.trainable:
        log.info("%s has nothing to train: scoring with the model as it is", kind.name)
        if is_main_process():
            ranker.save(output_dir / "best")
        barrier()
        summary: dict[str, Any] = {"best_value": None, "best_epoch": None, "global_step": 0, "trained": False}
    else:
        summary = train_ranker(
            ranker,
            fit_records,
            val,
            list(data.signals),
            data.val_oracle,
            best_model,
            sampling,
            job.trainer,
            output_dir,
            job.report.inference,
            job.logger,
            job.run_config,
            kind,
            fingerprint=run_fingerprint(
                data,
                job.trainer,
                job.report.inference,
                backbone=asdict(job.backbone),
                ranker=asdict(job.ranker),
            ),
        )
        log.info(
            "training done: best %s = %s at epoch %s",
            job.trainer.best_metric,
            summary["best_value"],
            summary["best_epoch"],
        )
    if job.evaluate_after_training and (output_dir / "best").is_dir():
        best = load_ranker(output_dir / "best")
        if eval_records is None:
            eval_records = data.load(data.eval_split)
        summary["eval"] = report_ranker(
            best,
            eval_records,
            train,
            data,
            data.eval_split,
            output_dir / "eval",
            output_dir / "best",
            job.report,
        )
    return summary


def initial_ranker(
    init_from: str, kind: RankerKind, signals: list[str], model_settings: dict[str, Any]
) -> nn.Module:
    """The checkpoint `ranker.init_from` names, to train on from its weights. It keeps its own settings (input
    format, budgets, pooling: what its weights were trained with); its tasks take the data's signal names, one to
    one."""
    if not kind.trainable:
        raise ValueError(
            f"ranker.init_from: {kind.name} has nothing to train; it scores with its model as it is"
        )
    ranker = load_ranker(init_from)
    if not isinstance(ranker, kind.model):
        raise ValueError(
            f"ranker.init_from={init_from!r} holds a {type(ranker).__name__}, but ranker={kind.name}"
        )
    if len(ranker.task_names) != len(signals):
        raise ValueError(
            f"ranker.init_from={init_from!r} has {len(ranker.task_names)} task(s) {ranker.task_names}, data.signals "
            f"has {len(signals)} {signals}: train on as many signals as the checkpoint has outputs"
        )
    if hasattr(ranker, "config") and hasattr(ranker.config, "task_names"):
        ranker.config.task_names = list(signals)
    else:
        ranker.task_names = list(signals)
    kept = ranker.settings() if hasattr(ranker, "settings") else {}
    differing = {
        k: (v, kept[k]) for k, v in model_settings.items() if k in kept and k != "task_names" and kept[k] != v
    }
    if differing:
        log.info(
            "ranker.init_from: keeping the checkpoint's settings over the config's: %s",
            ", ".join(f"{k}={theirs!r} (config: {ours!r})" for k, (ours, theirs) in differing.items()),
        )
    log.info(
        "initialised from %s (%.1fM parameters)", init_from, sum(p.numel() for p in ranker.parameters()) / 1e6
    )
    return ranker.train()


@dataclass
class FuserJob:
    """Train a GenFuser on a ranker's top-K, then fuse and score the eval split (`make train-fuser`).

    Attributes:
        build_fuser: makes the untrained fuser (called after seeding: its new weights are drawn then).
        generation: the decoding of the evaluation's fused answers.
        shuffle_candidates: shuffle the K candidates of each training example every epoch (the original).
        train_limit: the fuser learns from the first N train instructions (only their top-K is computed); the
            best single model and Table 2's named models are still chosen on the whole train split. None: all.
        val_loss_limit: the val instructions the val loss (the best checkpoint) is measured on; None: all.
            Fusing and scoring always cover the whole eval split.
    """

    data: DataSettings
    build_fuser: Callable[[], GenFuser]
    topk: TopKSettings
    trainer: TrainSettings
    output_dir: Path
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    shuffle_candidates: bool = True
    train_limit: int | None = None
    val_loss_limit: int | None = None
    report: ReportSettings = field(default_factory=ReportSettings)
    logger: LoggerSettings = field(default_factory=LoggerSettings)
    evaluate_after_training: bool = True
    run_config: dict[str, Any] | None = None


def train_and_evaluate_fuser(job: FuserJob) -> dict[str, Any]:
    """Rank train and val (cached), train the fuser on the top-K, then fuse the eval split and write Table 2.

    Returns:
        The training summary, with the fused row's report under "eval".
    """
    with _hold_run_folder(Path(job.output_dir)):
        return _train_and_evaluate_fuser(job)


def _train_and_evaluate_fuser(job: FuserJob) -> dict[str, Any]:
    data, topk, inference = job.data, job.topk, job.report.inference
    join_launched_run()  # before the top-K, so a launched run shards it
    phases: dict[str, float] = {}  # seconds per phase, logged and written to <run>/phases.json
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        phases[name] = round(now - clock[0], 1)
        clock[0] = now

    if data.extra_train:
        raise SettingsError(
            "data.extra_train: extra training data is for rankers; a fuser trains on data.path's"
        )
    train = data.load(data.train_split, data.limit_train)
    val = data.load(data.val_split, data.limit_val)
    fuser_train = train[: job.train_limit] if job.train_limit is not None else train
    lap("load_data")
    train_rankings, train_source = ranker_rankings(fuser_train, data.train_split, data.name, topk, inference)
    lap("topk_train")
    # `topk.pair_orders` may halve the train split's cost; val and eval are ranked on the full matrix, as
    # `make eval` and inference rank them, so the fused row reads the same top-K everywhere.
    full = replace(topk, pair_orders="both")
    val_rankings, val_source = ranker_rankings(val, data.val_split, data.name, full, inference)
    lap("topk_val")
    log.info(
        "top-K (K=%d, %s): train %s, val %s",
        topk.k,
        topk.selection,
        train_source.get("source"),
        val_source.get("source"),
    )
    # Before the model: its new weights (cross-attention, LoRA adapters, or all of a random config) are drawn here.
    set_seed(job.trainer.seed)
    fuser = job.build_fuser()
    lap("build_fuser")
    output_dir = Path(job.output_dir)
    val_loss_records = val[: job.val_loss_limit] if job.val_loss_limit is not None else val
    summary = train_fuser(
        fuser,
        fuser_examples(fuser, fuser_train, train_rankings, topk.k),
        fuser_examples(fuser, val_loss_records, val_rankings[: len(val_loss_records)], topk.k),
        job.trainer,
        output_dir,
        shuffle_candidates=job.shuffle_candidates,
        logger=job.logger,
        run_config=job.run_config,
        fingerprint=run_fingerprint(
            data,
            job.trainer,
            inference,
            fuser=(job.run_config or {}).get("fuser"),
            topk=asdict(topk),
            shuffle_candidates=job.shuffle_candidates,
            train_limit=job.train_limit,
            val_loss_limit=job.val_loss_limit,
        ),
    )
    lap("train")
    log.info(
        "training done: best %s = %s at epoch %s",
        job.trainer.best_metric,
        summary["best_value"],
        summary["best_epoch"],
    )
    if job.evaluate_after_training and (output_dir / "best").is_dir() and is_main_process():
        # Fusing is generation, not sharded: the main process alone fuses, scores and writes Table 2.
        if data.eval_split == data.val_split:
            records, rankings, source = val, val_rankings, val_source
        else:
            records = data.load(data.eval_split, data.limit_val)
            rankings, source = ranker_rankings(records, data.eval_split, data.name, full, inference)
        best = GenFuser.load(output_dir / "best", job.generation)
        rankers = []
        label = source.get("ranker_label", "PairRanker")
        if topk.selection == "ranker" and all(s is not None for s in source["scores"]):
            name = f"{label} + {topk.aggregation}" if source.get("pairwise", True) else label
            rankers = [Method(name, scores=[np.asarray(s) for s in source["scores"]])]
        lap("load_best")
        summary["eval"] = report_fused(
            best,
            str(output_dir / "best"),
            records,
            rankings,
            topk.k,
            topk.selection,
            rankers,
            train,
            data,
            data.eval_split,
            output_dir / "eval",
            job.report,
            ranker_label=label,
        )
        phases.update({f"eval/{k}": v for k, v in summary["eval"].get("seconds", {}).items()})
        lap("eval")
    summary["phases"] = phases
    log.info("phases (s): %s", ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    if is_main_process():
        write_json_atomic(output_dir / "phases.json", phases)
    return summary
