"""What an evaluation saves beside its table so later runs reuse it: PairRanker's N×N logits and a pointwise
ranker's N scores per instruction (`make eval` right after `make train-ranker`, the comparison of experiments,
the fuser's top-K)."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blender.records import Record

log = logging.getLogger(__name__)

# A checkpoint's weights, whichever format saved them (safetensors, or a torch pickle).
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")


def write_pair_logits(
    path: str | os.PathLike,
    record_ids: list[str],
    models: list[list[str]],
    matrices: list,
    seconds_per_instruction: float | None = None,
    mixed_precision: str | None = None,
) -> Path:
    """Save every N×N logit matrix (and whose rows they are) so picks can be analysed without rerunning;
    with the time the matrices took and their precision, `read_pair_logits` can stand in for a rerun."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    same_shape = len({m.shape for m in matrices}) == 1
    extra = {}
    if seconds_per_instruction is not None:
        extra["seconds_per_instruction"] = np.array(seconds_per_instruction, dtype=np.float64)
    if mixed_precision is not None:
        extra["mixed_precision"] = np.array(str(mixed_precision))
    # Records with equal candidate counts (MixInstruct, alpaca_blend) give plain arrays; others need pickling
    # (np.load(..., allow_pickle=True)).
    np.savez_compressed(
        tmp,
        ids=np.array(record_ids),
        models=np.array(models) if same_shape else np.array(models, dtype=object),
        logits=np.stack(matrices) if same_shape else np.array(matrices, dtype=object),
        **extra,
    )
    tmp.replace(path)
    return path


@dataclass
class SavedPairLogits:
    matrices: list[np.ndarray]
    seconds_per_instruction: float | None
    mixed_precision: str | None


def read_pair_logits(
    path: str | os.PathLike,
    records: Sequence[Record],
    checkpoint: str | os.PathLike,
    mixed_precision: str | None = None,
) -> SavedPairLogits | None:
    """The matrices `write_pair_logits` saved, when they are of these records (ids and candidate models, in
    order), newer than the checkpoint's weights and, if `mixed_precision` is given, computed at it; else None."""
    path, checkpoint = Path(path), Path(checkpoint)
    if not path.is_file():
        return None
    weights = [checkpoint / n for n in WEIGHTS_FILES if (checkpoint / n).is_file()]
    if not weights or path.stat().st_mtime < max(w.stat().st_mtime for w in weights):
        log.info("%s is older than %s (or it has no weights): not reused", path, checkpoint)
        return None
    try:
        with np.load(path, allow_pickle=True) as saved:
            ids, models, logits = saved["ids"].tolist(), list(saved["models"]), list(saved["logits"])
            seconds = float(saved["seconds_per_instruction"]) if "seconds_per_instruction" in saved else None
            precision = str(saved["mixed_precision"]) if "mixed_precision" in saved else None
    except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        # A cache, not a result: an unreadable one is recomputed (and rewritten), never trusted.
        log.warning("%s is unreadable (%s): recomputing the matrices", path, error)
        return None
    if ids != [r.id for r in records] or any(
        list(m) != r.models for m, r in zip(models, records, strict=True)
    ):
        log.info("%s holds other records than these %d: not reused", path, len(records))
        return None
    if mixed_precision is not None and precision != str(mixed_precision):
        log.info(
            "%s was computed at mixed_precision=%s, not %s: not reused", path, precision, mixed_precision
        )
        return None
    return SavedPairLogits([np.asarray(m, dtype=np.float64) for m in logits], seconds, precision)


def write_candidate_scores(
    path: str | os.PathLike, record_ids: list[str], models: list[list[str]], scores: list
) -> Path:
    """Save a pointwise ranker's scores (one per candidate) beside its table, as `write_pair_logits` does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    same_shape = len({len(s) for s in scores}) == 1
    np.savez_compressed(
        tmp,
        ids=np.array(record_ids),
        models=np.array(models) if same_shape else np.array(models, dtype=object),
        scores=np.stack(scores) if same_shape else np.array(scores, dtype=object),
    )
    tmp.replace(path)
    return path
