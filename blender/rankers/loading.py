"""Load any ranker checkpoint: a folder or a hub id, of blender's own kinds or of the released PairRM rankers.

What a folder holds decides how it loads:
- `config.json` of model type "blender-pairranker": a PairRanker saved with `save_pretrained`;
- `ranker_config.json`: a checkpoint of blender's earlier layout (any kind: PairRanker, SummaReranker,
  SimCLS, MLM-Scoring), by the kind it names;
- `config.json` of llm-blender's `RankerConfig` (`llm-blender/PairRM`) or of `DebertaV2PairRM`
  (`llm-blender/PairRM-hf`): a released PairRM ranker (`blender.rankers.pairrm`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from blender.rankers.mlm_scoring import MLMScorer
from blender.rankers.pairranker import RANKER_CONFIG_FILE, PairRanker, PairRankerConfig
from blender.rankers.pairrm import CheckpointLoadError, load_pairrm, pairrm_layout
from blender.rankers.pointwise import PointwiseRanker, SimCLS, SummaReranker

# `ranker=<name>` in config, and the "ranker" field every checkpoint's ranker_config.json carries.
RANKER_CLASSES = {
    "pairranker": PairRanker,
    "summareranker": SummaReranker,
    "simcls": SimCLS,
    "mlm_scoring": MLMScorer,
}
Ranker = PairRanker | PointwiseRanker
# What a hub checkpoint needs: configs, tokenizer files, weights (pytorch_model.bin only when no safetensors).
HUB_PATTERNS = ["*.json", "*.model", "*.txt", "*.safetensors"]


def checkpoint_folder(name_or_path: str | os.PathLike) -> Path:
    """A local checkpoint folder for a folder or a hub id (downloaded through `huggingface_hub`, or taken
    from its cache when offline)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    # A hub id is "name" or "owner/name"; anything else that is not a folder is a path that does not exist.
    if path.exists() or os.path.isabs(name) or name.startswith(".") or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: not a ranker checkpoint (no such folder)")
    from huggingface_hub import snapshot_download  # only on the hub path

    repo_id = str(name_or_path)
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(repo_id, allow_patterns=[*HUB_PATTERNS, "pytorch_model.bin"]))
    except Exception as error:  # huggingface_hub raises many types for an unreachable hub or a missing repo
        raise CheckpointLoadError(
            f"{repo_id}: no such folder, and the hub has no copy we can reach ({type(error).__name__}: {error}). "
            f"Without hub access, download it where the hub is reachable (`hf download {repo_id} --local-dir "
            "DIR`) and pass the folder instead"
        ) from error
    return folder


def load_ranker(
    name_or_path: str | os.PathLike, map_location: str = "cpu", backbone: str | None = None
) -> Ranker:
    """Rebuild the ranker saved in a folder or hub repo (PairRanker, SummaReranker, SimCLS, MLM-Scoring, or a
    released PairRM).

    Args:
        name_or_path: the folder, or a hub id such as "llm-blender/PairRM".
        map_location: the device to load onto.
        backbone: for the `llm-blender/PairRM` layout only, where its backbone's tokenizer and config are
            (instead of its `model_name`).
    """
    folder = checkpoint_folder(name_or_path)
    settings_file = folder / RANKER_CONFIG_FILE
    if settings_file.is_file():
        kind = json.loads(settings_file.read_text()).get("ranker", "pairranker")
        if kind not in RANKER_CLASSES:
            raise ValueError(f"{settings_file}: unknown ranker {kind!r}; known: {sorted(RANKER_CLASSES)}")
        return RANKER_CLASSES[kind].load(folder, map_location=map_location)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: not a ranker checkpoint (no config.json or {RANKER_CONFIG_FILE})")
    config = json.loads(config_file.read_text())
    if config.get("model_type") == PairRankerConfig.model_type:
        return PairRanker.load(folder, map_location=map_location)
    if pairrm_layout(config) is not None:
        return load_pairrm(folder, backbone=backbone, map_location=map_location)
    raise CheckpointLoadError(
        f"{config_file}: not a ranker checkpoint this code reads (model_type {config.get('model_type')!r}); it reads "
        "blender's own (model_type blender-pairranker, or a ranker_config.json) and the released "
        "llm-blender/PairRM and llm-blender/PairRM-hf layouts"
    )
