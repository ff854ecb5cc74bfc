"""Rankers: PairRanker (pairwise cross-encoder), its loss, backbones and batched inference."""

from blender.rankers.backbone import BackboneLoadError, build_backbone, load_tokenizer, resolve_name_or_path
from blender.rankers.losses import pairwise_logistic_loss
from blender.rankers.pairranker import PairRanker
from blender.rankers.predict import (
    InferenceSettings,
    bubble_scores_online,
    encode_records,
    full_matrices,
    length_sorted_batches,
    score_pairs,
)

__all__ = [
    "BackboneLoadError",
    "InferenceSettings",
    "PairRanker",
    "bubble_scores_online",
    "build_backbone",
    "encode_records",
    "full_matrices",
    "length_sorted_batches",
    "load_tokenizer",
    "pairwise_logistic_loss",
    "resolve_name_or_path",
    "score_pairs",
]
