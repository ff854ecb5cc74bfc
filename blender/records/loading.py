"""Load MixInstruct-style records from local `.jsonl` / `.jsonl.gz` files or from the hub.

Local files are read line by line so a bad record stops the load with `file:line: what is wrong`.
The hub dataset (`llm-blender/mix-instruct`) goes through `datasets.load_dataset`; the same function
reads a local file with `name="json"`, which is how the tests exercise that path offline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from blender.files import iter_text_lines, parse_json_line
from blender.records.schema import Record, RecordError, parse_record
from blender.settings import SettingsError, check_types, require, require_choice, require_positive

log = logging.getLogger(__name__)

SPLIT_SUFFIXES = (".jsonl", ".jsonl.gz")


class DataPathError(FileNotFoundError):
    """A data path that does not exist; the message says which and how to point elsewhere."""


def read_jsonl(path: str | os.PathLike, limit: int | None = None) -> list[Record]:
    """Read and validate every record of a `.jsonl` or `.jsonl.gz` file.

    Args:
        path: the file.
        limit: keep only the first `limit` records (all are still read up to there and validated).
    Returns:
        The records in file order.
    Raises:
        DataPathError: the file does not exist.
        RecordError: `file:line: what is wrong` for the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataPathError(f"{path}: no such data file")
    records: list[Record] = []
    seen_ids: dict[str, int] = {}
    for line_no, line in iter_text_lines(path, RecordError):
        if limit is not None and len(records) >= limit:
            break
        where = f"{path}:{line_no}"
        if not line.strip():
            raise RecordError(f"{where}: empty line (one JSON record per line expected)")
        record = parse_record(parse_json_line(line, where, RecordError), where=where)
        if record.id in seen_ids:
            raise RecordError(f"{where}: id {record.id!r} repeats line {seen_ids[record.id]}")
        seen_ids[record.id] = line_no
        records.append(record)
    if not records:
        raise RecordError(f"{path}:1: no records (the file is empty)")
    return records


def find_split_file(folder: str | os.PathLike, split: str, option: str = "data.path") -> Path:
    """Return `<folder>/<split>.jsonl` or `<folder>/<split>.jsonl.gz`, with a clear error if neither exists
    (naming `option`, the setting that gave the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        hint = (
            " or set the data config's environment variable (see conf/data/)" if option == "data.path" else ""
        )
        raise DataPathError(
            f"{folder}: no such data folder (resolved to {folder.resolve()}); point {option} at a folder "
            f"holding <split>.jsonl files{hint}"
        )
    for suffix in SPLIT_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    present = sorted(p.name for p in folder.iterdir() if p.name.endswith(SPLIT_SUFFIXES))
    raise DataPathError(f"{folder}: no {split}.jsonl or {split}.jsonl.gz (found: {present or 'none'})")


def load_hf_split(
    name: str, split: str, data_files: str | Sequence[str] | None = None, limit: int | None = None
) -> list[Record]:
    """Load a split through `datasets.load_dataset` and validate every row.

    Args:
        name: a hub dataset id (`llm-blender/mix-instruct`) or a builder such as "json".
        split: the split name.
        data_files: files for a builder such as "json" (the tests read local files this way).
        limit: keep only the first `limit` rows.
    Returns:
        The records in dataset order.
    """
    import datasets  # heavy import, only on this path

    try:
        dataset = datasets.load_dataset(name, split=split, data_files=data_files)
    except Exception as error:  # datasets raises many types for an unreachable hub or a missing split
        raise DataPathError(
            f"could not load dataset {name!r} split {split!r} through `datasets` ({type(error).__name__}: {error}). "
            "Without hub access, download the release elsewhere and point data.path at a folder of "
            "<split>.jsonl files instead (data.source=local)."
        ) from error
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    label = f"{name}[{split}]" if data_files is None else f"{data_files}[{split}]"
    records = [parse_record(row, where=f"{label} row {i}") for i, row in enumerate(dataset)]
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise RecordError(f"{label}: record ids repeat")
    return records


def load_candidates(
    path: str | os.PathLike | None,
    splits: Sequence[str] = ("train", "val"),
    limit: int | None = None,
    hub_id: str | None = None,
    option: str = "data.path",
) -> list[list[Record]]:
    """Load several splits of a dataset, from a local folder or (when `path` is None) from the hub.

    Args:
        path: folder with `<split>.jsonl(.gz)` files; None to use `hub_id`.
        splits: the splits to load, in order.
        limit: keep only the first `limit` records of each split (for quick runs).
        hub_id: the hub dataset id, used when `path` is None.
        option: the setting that named `path`, for the error when it is not a folder.
    Returns:
        One list of records per split.
    """
    if path is None and hub_id is None:
        raise DataPathError("neither data.path nor data.hub_id is set")
    loaded = []
    for split in splits:
        if path is not None:
            records = read_jsonl(find_split_file(path, split, option), limit=limit)
        else:
            records = load_hf_split(hub_id, split, limit=limit)
        log.info("loaded %d %s records from %s", len(records), split, path or hub_id)
        loaded.append(records)
    return loaded


@dataclass
class DataSettings:
    """Which dataset, which splits, what a ranker trains on and what judges it (`conf/data/*.yaml`).

    Attributes:
        name: the data config's name (`alpaca_blend_modern`, `mixinstruct`, ...): output file names carry it.
        format: "mixinstruct" (records with candidates) or "preference" (prompt / chosen / rejected pairs, as
            TRL's preference datasets; `blender.records.preference`).
        path: a folder of `<split>.jsonl(.gz)` files; None reads `hub_id` through `datasets`.
        hub_id: the hub dataset, when `path` is None.
        train_split: the split rankers and fusers train on.
        val_split: the split that picks the best checkpoint.
        eval_split: the split `make eval` reports on.
        signals: the stored score names a ranker trains on, one task each.
        signal_transform: "none", "logit" or "rank" (see `blender.records.pairs.signal_matrix`), or per signal.
        min_delta: |Δ transformed signal| at or below this is a tie (no loss), or per signal.
        oracle: what the evaluation ranks by: a score name or "cmp_results".
        val_oracle: what picks the best checkpoint on `val_split`.
        limit_train: read only the first records of the train split (quick runs); None reads all.
        limit_val: the same for the val and eval splits.
        extra_train: folders of other MixInstruct-format datasets whose `train_split` a ranker trains on too (with
            this data's signals, transform and ties); the best single model, the model prior and every evaluation
            still read this dataset's splits only. An instruction id shared with the held-out splits is an error.
    """

    name: str = "alpaca_blend_modern"
    format: str = "mixinstruct"
    path: str | None = "../shared/data/alpaca_blend_modern"
    hub_id: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    eval_split: str = "val"
    signals: list[str] = field(default_factory=lambda: ["gpt4_pref"])
    signal_transform: str | dict[str, str] = "none"
    min_delta: float | dict[str, float] = 0.1
    oracle: str = "gpt4_pref"
    val_oracle: str = "gpt4_pref"
    limit_train: int | None = None
    limit_val: int | None = None
    extra_train: list[str] = field(default_factory=list)

    CONFIG_KEY: ClassVar[str] = "data"

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "limit_train", "limit_val", allow_none=True)
        require_choice(self, "format", ("mixinstruct", "preference"))
        require(
            self, "path", self.path is not None or self.hub_id is not None, "set data.path or data.hub_id"
        )
        require(self, "signals", bool(self.signals), "name at least one stored score to train on")
        require(
            self,
            "extra_train",
            not self.extra_train or self.format == "mixinstruct",
            "extra training data needs records with candidates (format: mixinstruct)",
        )

    def load(self, split: str, limit: int | None = None) -> list[Record]:
        """One split's records, validated (see `load_candidates`; preference pairs: `load_preference_split`)."""
        if self.format == "preference":
            from blender.records.preference import load_preference_split  # it builds on this module

            return load_preference_split(self.path, split, limit=limit, hub_id=self.hub_id)
        (records,) = load_candidates(self.path, splits=(split,), limit=limit, hub_id=self.hub_id)
        return records

    def load_extra_train(self, held_out: Sequence[Record], limit: int | None = None) -> list[Record]:
        """The train splits of `extra_train`'s folders, one after another; an instruction that is also in
        `held_out` (the val and eval records) raises, as training on it would leak what the run is judged on."""
        held_out_ids = {r.id for r in held_out}
        records: list[Record] = []
        for folder in self.extra_train:
            (part,) = load_candidates(
                folder, splits=(self.train_split,), limit=limit, option="data.extra_train"
            )
            shared = sorted({r.id for r in part} & held_out_ids)
            if shared:
                raise SettingsError(
                    f"data.extra_train: {len(shared)} {self.train_split} instruction(s) of {folder} (e.g. "
                    f"{shared[:3]}) are held out in {self.name}'s val or eval split: training on them leaks it"
                )
            records += part
        return records


__all__ = [
    "DataPathError",
    "DataSettings",
    "RecordError",
    "find_split_file",
    "load_candidates",
    "load_hf_split",
    "read_jsonl",
]
