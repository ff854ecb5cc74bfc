"""Rankers: the registry of kinds (`registry.RANKERS`: how each kind is built, trained, scored and loaded), one
module per kind (PairRanker, the pairwise cross-encoder; the paper's baselines SummaReranker, SimCLS and
MLM-Scoring; the listwise ranker; the released PairRM loads as a PairRanker), their losses, backbones, the pair encoding they read, batched inference, checkpoints and the scores
an evaluation saves."""

from blender.rankers.backbone import BackboneLoadError, BackboneSettings, build_backbone, load_tokenizer
from blender.rankers.listwise import ListwiseRanker, ListwiseSampling
from blender.rankers.losses import (
    all_pairs_logistic_loss,
    listnet_loss,
    pairwise_logistic_loss,
    simcls_ranking_loss,
    summareranker_bce_loss,
)
from blender.rankers.mlm_scoring import MLMScorer, build_mlm_scorer
from blender.rankers.pairranker import PairRanker, PairRankerConfig, PairSampling
from blender.rankers.pairrm import CheckpointLoadError, load_pairrm
from blender.rankers.pairrm_encoding import PairRMEncoder
from blender.rankers.predict import (
    InferenceSettings,
    bubble_scores_online,
    encode_records,
    full_matrices,
    length_sorted_batches,
    score_pairs,
)
from blender.rankers.registry import (
    RANKERS,
    PointwiseRanker,
    Ranker,
    RankerKind,
    TrainingPlan,
    build_ranker,
    get_kind,
    kind_of,
    load_ranker,
)
from blender.rankers.simcls import SimCLS, SimCLSSampling
from blender.rankers.summareranker import SummaReranker, SummaRerankerSampling

__all__ = [
    "RANKERS",
    "BackboneLoadError",
    "CheckpointLoadError",
    "BackboneSettings",
    "InferenceSettings",
    "ListwiseRanker",
    "ListwiseSampling",
    "MLMScorer",
    "PairRMEncoder",
    "PairRanker",
    "PairRankerConfig",
    "PairSampling",
    "PointwiseRanker",
    "Ranker",
    "RankerKind",
    "SimCLS",
    "SimCLSSampling",
    "SummaReranker",
    "SummaRerankerSampling",
    "TrainingPlan",
    "all_pairs_logistic_loss",
    "bubble_scores_online",
    "build_backbone",
    "build_mlm_scorer",
    "build_ranker",
    "encode_records",
    "full_matrices",
    "get_kind",
    "kind_of",
    "listnet_loss",
    "length_sorted_batches",
    "load_pairrm",
    "load_ranker",
    "load_tokenizer",
    "pairwise_logistic_loss",
    "score_pairs",
    "simcls_ranking_loss",
    "summareranker_bce_loss",
]
