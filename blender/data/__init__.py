"""MixInstruct records: schema and validation, loading, training pairs and pair batches."""

from blender.data.collate import PAIR_SPECIAL_TOKENS, EncodedTexts, PairEncoder, add_pair_tokens
from blender.data.loading import DataPathError, find_split_file, load_candidates, load_hf_split, read_jsonl
from blender.data.pairs import Pair, pair_targets, per_signal, sample_pairs, signal_matrix
from blender.data.schema import Candidate, Record, RecordError, join_source, parse_record

__all__ = [
    "PAIR_SPECIAL_TOKENS",
    "Candidate",
    "DataPathError",
    "EncodedTexts",
    "Pair",
    "PairEncoder",
    "Record",
    "RecordError",
    "add_pair_tokens",
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
