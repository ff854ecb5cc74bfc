"""Load any ranker checkpoint by the kind its `ranker_config.json` names."""

from __future__ import annotations

import json
import os
from pathlib import Path

from blender.rankers.mlm_scoring import MLMScorer
from blender.rankers.pairranker import RANKER_CONFIG_FILE, PairRanker
from blender.rankers.pointwise import PointwiseRanker, SimCLS, SummaReranker

# `ranker=<name>` in config, and the "ranker" field every checkpoint's ranker_config.json carries.
RANKER_CLASSES = {
    "pairranker": PairRanker,
    "summareranker": SummaReranker,
    "simcls": SimCLS,
    "mlm_scoring": MLMScorer,
}
Ranker = PairRanker | PointwiseRanker


def load_ranker(directory: str | os.PathLike, map_location: str = "cpu") -> Ranker:
    """Rebuild the ranker saved in `directory` (PairRanker, SummaReranker, SimCLS or MLM-Scoring)."""
    settings_file = Path(directory) / RANKER_CONFIG_FILE
    if not settings_file.is_file():
        raise FileNotFoundError(f"{directory}: not a ranker checkpoint (no {RANKER_CONFIG_FILE})")
    kind = json.loads(settings_file.read_text()).get("ranker", "pairranker")
    if kind not in RANKER_CLASSES:
        raise ValueError(f"{settings_file}: unknown ranker {kind!r}; known: {sorted(RANKER_CLASSES)}")
    return RANKER_CLASSES[kind].load(directory, map_location=map_location)
