"""A ranker checkpoint folder: the backbone's config and tokenizer, the weights, and `ranker_config.json`.

`ranker_config.json` holds `{"ranker": <kind>, **the model's settings}`; the kind says which entry of
`blender.rankers.registry.RANKERS` reads the folder back. Every ranker but MLM-Scoring (which saves its masked
LM with `save_pretrained`) writes the same three parts, so one pair of functions serves them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

RANKER_CONFIG_FILE = "ranker_config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(FileNotFoundError):
    """A folder that is not a ranker checkpoint, or of another kind; the message says which file is wrong."""


# What a hub checkpoint needs: configs, tokenizer files, weights (pytorch_model.bin only when no safetensors).
HUB_PATTERNS = ["*.json", "*.model", "*.txt", "*.safetensors"]


def checkpoint_folder(name_or_path: str | os.PathLike) -> Path:
    """A local checkpoint folder for a folder or a hub id (downloaded through `huggingface_hub`, or taken from its
    cache when offline)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    # A hub id is "name" or "owner/name"; anything else that is not a folder is a path that does not exist.
    if path.exists() or os.path.isabs(name) or name.startswith(".") or name.count("/") > 1:
        raise CheckpointError(f"{name}: not a ranker checkpoint (no such folder)")
    from huggingface_hub import snapshot_download  # only on the hub path

    try:
        folder = Path(snapshot_download(name, allow_patterns=HUB_PATTERNS))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, allow_patterns=[*HUB_PATTERNS, "pytorch_model.bin"]))
    except Exception as error:  # huggingface_hub raises many types for an unreachable hub or a missing repo
        raise CheckpointError(
            f"{name}: no such folder, and the hub has no copy we can reach ({type(error).__name__}: {error}). "
            f"Without hub access, download it where the hub is reachable (`hf download {name} --local-dir DIR`) "
            "and pass the folder instead"
        ) from error
    return folder


def is_ranker_checkpoint(folder: str | os.PathLike) -> bool:
    """A folder any ranker loader reads: `ranker_config.json`, or a `config.json` of blender's PairRanker or of a
    released PairRM layout (cheap: reads one small file)."""
    folder = Path(folder)
    if (folder / RANKER_CONFIG_FILE).is_file():
        return True
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        config.get("model_type") == "blender-pairranker"
        or "ranker_type" in config
        or ("DebertaV2PairRM" in (config.get("architectures") or []))
    )


def read_ranker_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The `ranker_config.json` of a checkpoint folder, with its `ranker` kind (older folders lack it: pairranker)."""
    settings_file = Path(directory) / RANKER_CONFIG_FILE
    if not settings_file.is_file():
        raise CheckpointError(f"{directory}: not a ranker checkpoint (no {RANKER_CONFIG_FILE})")
    try:
        settings = json.loads(settings_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{settings_file}: not valid JSON ({error})") from None
    if not isinstance(settings, dict):
        raise CheckpointError(f"{settings_file}: expected a JSON object")
    settings.setdefault("ranker", "pairranker")
    return settings


def write_checkpoint(
    module: nn.Module,
    backbone: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: str | os.PathLike,
    kind: str,
    settings: dict[str, Any],
) -> None:
    """Write `module`'s weights, the backbone's config, the tokenizer and `{"ranker": kind, **settings}`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backbone.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    save_model(module, str(directory / WEIGHTS_FILE))
    (directory / RANKER_CONFIG_FILE).write_text(json.dumps({"ranker": kind, **settings}, indent=2))


def read_checkpoint(
    directory: str | os.PathLike, kind: str
) -> tuple[dict[str, Any], PreTrainedModel, PreTrainedTokenizerBase]:
    """(settings, an empty backbone of the saved config, the tokenizer) of a `kind` checkpoint; the weights are
    loaded afterwards by `load_weights`, once the module around the backbone exists."""
    settings = read_ranker_config(directory)
    saved_kind = settings.pop("ranker")
    if saved_kind != kind:
        raise CheckpointError(
            f"{Path(directory) / RANKER_CONFIG_FILE}: a {saved_kind} checkpoint, not {kind}"
        )
    backbone = AutoModel.from_config(AutoConfig.from_pretrained(directory))
    return settings, backbone, AutoTokenizer.from_pretrained(directory)


def load_weights(module: nn.Module, directory: str | os.PathLike, map_location: str = "cpu") -> nn.Module:
    """Fill `module` from the checkpoint's safetensors (strict: every key must match) and put it in eval mode."""
    load_model(module, str(Path(directory) / WEIGHTS_FILE), device=map_location)
    return module.eval()
