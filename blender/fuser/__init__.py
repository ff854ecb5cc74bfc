"""GenFuser: fuse a ranker's top-K candidates into one answer: the fusion input (`packing`), the generator and its
checkpoint (`model`), the cached top-K of a split (`topk`), training examples and the fit (`training`), and the
fused answers of a split with their scores and judge placement (`fused`)."""

from blender.fuser.finetuning import FinetuneSettings
from blender.fuser.fused import (
    FUSED_FIELD,
    FusedAnswers,
    fuse_records,
    fused_row_name,
    judge_fused,
    place_fused,
)
from blender.fuser.model import GenerationSettings, GenFuser, build_fuser
from blender.fuser.packing import PackingSettings, pack_source, pack_target, truncate_candidate
from blender.fuser.quality import AnswerStatistics, answer_statistics
from blender.fuser.topk import RankerNotFoundError, TopKSettings, ranker_rankings, rankings_from_scores
from blender.fuser.training import FuserExample, fuser_examples, fuser_loss, train_fuser

__all__ = [
    "AnswerStatistics",
    "FUSED_FIELD",
    "FinetuneSettings",
    "FusedAnswers",
    "FuserExample",
    "GenFuser",
    "GenerationSettings",
    "PackingSettings",
    "RankerNotFoundError",
    "TopKSettings",
    "answer_statistics",
    "build_fuser",
    "fuse_records",
    "fused_row_name",
    "fuser_examples",
    "fuser_loss",
    "judge_fused",
    "pack_source",
    "pack_target",
    "place_fused",
    "ranker_rankings",
    "rankings_from_scores",
    "train_fuser",
    "truncate_candidate",
]
