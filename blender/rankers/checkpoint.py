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
