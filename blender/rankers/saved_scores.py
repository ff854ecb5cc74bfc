"""What an evaluation saves beside its table so later runs reuse it: a pairwise ranker's N×N logits and a pointwise
ranker's N scores per instruction (`make eval` right after `make train-ranker`, the comparison of experiments,
the fuser's top-K).

Saved without pickles: a run folder is something users copy and receive from others, and `np.load` with
`allow_pickle=True` runs whatever code a crafted file holds. Ragged rows (records with different candidate counts)
are one flat array plus the count per record; ids and models are plain string arrays. Files are read with
`allow_pickle=False`; one that is not of this layout is unreadable: a cache treats it as absent, a result says so.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blender.files import write_bytes_atomic
from blender.records import Record

log = logging.getLogger(__name__)

# A checkpoint's weights, whichever format saved them (safetensors, or a torch pickle).
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")


class SavedScoresError(ValueError):
    """A saved-scores file that cannot be read as this module writes it; the message names the file."""


def _write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_bytes_atomic(path, buffer.getvalue())


def _ragged(
    ids: Sequence[str], models: Sequence[Sequence[str]], values: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    counts = np.array([len(m) for m in models], dtype=np.int64)
    return {
        "ids": np.array(list(ids), dtype=str),
        "n_candidates": counts,
        "models": np.array([m for row in models for m in row], dtype=str),
        "values": np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
        if len(values)
        else np.zeros(0),
    }


def _read_npz(
    path: Path, square: bool
) -> tuple[list[str], list[list[str]], list[np.ndarray], dict[str, np.ndarray]]:
    """(ids, models per record, values per record (N×N when `square`, else N), the other arrays)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # ValueError covers "Object arrays cannot be loaded when allow_pickle=False": a pickle is never run.
        raise SavedScoresError(f"{path}: not a saved-scores file blender can read ({error})") from None
    legacy = "logits" if square else "scores"
    if "values" not in arrays and legacy in arrays and arrays[legacy].ndim == (3 if square else 2):
        # Written before this layout, by records of equal candidate counts: plain arrays, no pickle.
        stacked, models_2d = arrays.pop(legacy), arrays.pop("models")
        arrays["n_candidates"] = np.full(len(stacked), stacked.shape[1], dtype=np.int64)
        arrays["models"], arrays["values"] = models_2d.ravel(), stacked.ravel()
    try:
        ids, counts = arrays.pop("ids").tolist(), arrays.pop("n_candidates").tolist()
        flat_models, flat = arrays.pop("models").tolist(), arrays.pop("values")
        sizes = [n * n if square else n for n in counts]
        if len(ids) != len(counts) or sum(counts) != len(flat_models) or sum(sizes) != flat.size:
            raise ValueError("its arrays do not agree in length")
        starts, model_starts = np.cumsum([0, *sizes]), np.cumsum([0, *counts])
        values = [
            flat[starts[k] : starts[k + 1]].reshape((n, n) if square else (n,)).astype(np.float64)
            for k, n in enumerate(counts)
        ]
        models = [flat_models[model_starts[k] : model_starts[k + 1]] for k in range(len(counts))]
    except (KeyError, ValueError, TypeError) as error:
        raise SavedScoresError(f"{path}: not a saved-scores file blender can read ({error})") from None
    return [str(i) for i in ids], [[str(m) for m in row] for row in models], values, arrays


def write_pair_logits(
    path: str | os.PathLike,
    record_ids: list[str],
    models: list[list[str]],
    matrices: list,
    seconds_per_instruction: float | None = None,
    precision: str | None = None,
) -> Path:
    """Save every N×N logit matrix (and whose rows they are) so picks can be analysed without rerunning;
    with the time the matrices took and their precision, `read_pair_logits` can stand in for a rerun."""
    arrays = _ragged(record_ids, models, matrices)
    if seconds_per_instruction is not None:
        arrays["seconds_per_instruction"] = np.array(seconds_per_instruction, dtype=np.float64)
    if precision is not None:
        arrays["precision"] = np.array(str(precision))
    return _write_npz(path, arrays)


@dataclass
class SavedPairLogits:
    ids: list[str]
    models: list[list[str]]
    matrices: list[np.ndarray]
    seconds_per_instruction: float | None
    precision: str | None


def load_pair_logits(path: str | os.PathLike) -> SavedPairLogits:
    """Everything `write_pair_logits` saved. Raises SavedScoresError for a file of another layout."""
    ids, models, matrices, rest = _read_npz(Path(path), square=True)
    seconds = float(rest["seconds_per_instruction"]) if "seconds_per_instruction" in rest else None
    return SavedPairLogits(ids, models, matrices, seconds, saved_precision_of(rest))


def saved_precision_of(arrays: dict[str, np.ndarray]) -> str | None:
    """The precision saved matrices were computed at (files written before `inference.precision`: their
    "mixed_precision", "no" being fp32)."""
    if "precision" in arrays:
        return str(arrays["precision"])
    if "mixed_precision" in arrays:
        legacy = str(arrays["mixed_precision"])
        return "fp32" if legacy == "no" else legacy
    return None


def _newer_than_weights(path: Path, checkpoint: Path) -> bool:
    """Whether a saved-scores file exists and was written after the checkpoint's weights (else it is stale)."""
    if not path.is_file():
        return False
    weights = [checkpoint / n for n in WEIGHTS_FILES if (checkpoint / n).is_file()]
    if not weights or path.stat().st_mtime < max(w.stat().st_mtime for w in weights):
        log.info("%s is older than %s (or it has no weights): not reused", path, checkpoint)
        return False
    return True


def _same_records(path: Path, ids: list[str], models: list[list[str]], records: Sequence[Record]) -> bool:
    if ids != [r.id for r in records] or models != [r.models for r in records]:
        log.info("%s holds other records than these %d: not reused", path, len(records))
        return False
    return True


def read_pair_logits(
    path: str | os.PathLike,
    records: Sequence[Record],
    checkpoint: str | os.PathLike,
    precision: str | None = None,
) -> SavedPairLogits | None:
    """The matrices `write_pair_logits` saved, when they are of these records (ids and candidate models, in
    order), newer than the checkpoint's weights and, if `precision` is given, computed at it; else None."""
    path, checkpoint = Path(path), Path(checkpoint)
    if not _newer_than_weights(path, checkpoint):
        return None
    try:
        saved = load_pair_logits(path)
    except SavedScoresError as error:
        # A cache, not a result: an unreadable one is recomputed (and rewritten), never trusted.
        log.warning("%s; recomputing the matrices", error)
        return None
    if not _same_records(path, saved.ids, saved.models, records):
        return None
    if precision is not None and saved.precision != str(precision):
        log.info("%s was computed at precision=%s, not %s: not reused", path, saved.precision, precision)
        return None
    return saved


def write_candidate_scores(
    path: str | os.PathLike, record_ids: list[str], models: list[list[str]], scores: list
) -> Path:
    """Save a pointwise ranker's scores (one per candidate) beside its table, as `write_pair_logits` does."""
    return _write_npz(path, _ragged(record_ids, models, scores))


def load_candidate_scores(path: str | os.PathLike) -> tuple[list[str], list[list[str]], list[np.ndarray]]:
    """(ids, models, scores per record) that `write_candidate_scores` saved. Raises SavedScoresError."""
    ids, models, scores, _ = _read_npz(Path(path), square=False)
    return ids, models, scores


def read_candidate_scores(
    path: str | os.PathLike, records: Sequence[Record], checkpoint: str | os.PathLike
) -> list[np.ndarray] | None:
    """The scores `write_candidate_scores` saved, when they are of these records (ids and candidate models, in
    order) and newer than the checkpoint's weights; else None (as `read_pair_logits`)."""
    path, checkpoint = Path(path), Path(checkpoint)
    if not _newer_than_weights(path, checkpoint):
        return None
    try:
        ids, models, scores = load_candidate_scores(path)
    except SavedScoresError as error:
        log.warning("%s; recomputing the scores", error)
        return None
    if not _same_records(path, ids, models, records):
        return None
    return scores
