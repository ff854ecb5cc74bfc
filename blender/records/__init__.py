"""The MixInstruct record, at the bottom of the package: its schema and validation, validated loading from local
files or the hub, the data settings that say which split to read, and the training signals and pairs drawn from
records. Imports no model, tokenizer or HTTP client, so reading one record is cheap."""

from blender.records.loading import (
    DataPathError,
    DataSettings,
    find_split_file,
    load_candidates,
    load_hf_split,
    read_jsonl,
)
from blender.records.pairs import Pair, pair_targets, per_signal, sample_pairs, signal_matrix
from blender.records.schema import CMP_LABELS, Candidate, Record, RecordError, join_source, parse_record

__all__ = [
    "CMP_LABELS",
    "Candidate",
    "DataPathError",
    "DataSettings",
    "Pair",
    "Record",
    "RecordError",
    "find_split_file",
    "join_source",
    "load_candidates",
    "load_hf_split",
    "pair_targets",
    "parse_record",
    "per_signal",
    "read_jsonl",
    "sample_pairs",
    "signal_matrix",
]
