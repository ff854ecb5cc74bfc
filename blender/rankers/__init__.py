"""Rankers: PairRanker (pairwise cross-encoder; the released PairRM loads as one) and the paper's baselines
(SummaReranker, SimCLS, MLM-Scoring), their losses, backbones, batched inference and checkpoint loading."""

from blender.rankers.backbone import BackboneLoadError, build_backbone, load_tokenizer, resolve_name_or_path
from blender.rankers.loading import RANKER_CLASSES, Ranker, load_ranker
from blender.rankers.losses import pairwise_logistic_loss, simcls_ranking_loss, summareranker_bce_loss
from blender.rankers.mlm_scoring import MLMScorer, build_mlm_scorer
from blender.rankers.pairranker import PairRanker, PairRankerConfig
from blender.rankers.pairrm import CheckpointLoadError, load_pairrm
from blender.rankers.pairrm_encoding import PairRMEncoder
from blender.rankers.pointwise import PointwiseRanker, SimCLS, SummaReranker
from blender.rankers.predict import (
    InferenceSettings,
    bubble_scores_online,
    encode_records,
    full_matrices,
    length_sorted_batches,
    score_pairs,
)

__all__ = [
    "RANKER_CLASSES",
    "BackboneLoadError",
    "CheckpointLoadError",
    "InferenceSettings",
    "MLMScorer",
    "PairRMEncoder",
    "PairRanker",
    "PairRankerConfig",
    "PointwiseRanker",
    "Ranker",
    "SimCLS",
    "SummaReranker",
    "bubble_scores_online",
    "build_backbone",
    "build_mlm_scorer",
    "encode_records",
    "full_matrices",
    "length_sorted_batches",
    "load_pairrm",
    "load_ranker",
    "load_tokenizer",
    "pairwise_logistic_loss",
    "resolve_name_or_path",
    "score_pairs",
    "simcls_ranking_loss",
    "summareranker_bce_loss",
]
