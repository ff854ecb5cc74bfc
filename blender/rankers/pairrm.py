"""Load the released PairRM rankers as PairRankers, reading their folders as llm-blender 0.0.2 does.

Two layouts hold one state dict (`pretrained_model.*`: a DeBERTa-v2 encoder without pooler; `head_layer.1.*`
Linear 2H→H; `head_layer.4.*` Linear H→n_tasks, with a bias):

- `llm-blender/PairRM`, what `Blender.loadranker` reads: `config.json` holds llm-blender's `RankerConfig`
  (`ranker_type` "pairranker", `model_name` the backbone, `source_maxlength` 1224, `candidate_maxlength` 412,
  `n_tasks`, `drop_out`, `fp16`). The tokenizer and the backbone's config come from `model_name`, the four
  prefix tokens are added at load time and the embeddings take the tokenizer's size (128100 rows -> 128005 in
  the release). The weights are `model.safetensors` (every key, as `safetensors.torch.load_model` insists),
  or else `pytorch_model.bin` (read with torch's weights-only loader; keys it lacks keep the pretrained
  backbone's values, as `load_state_dict(strict=False)` leaves them).
- `llm-blender/PairRM-hf` (`DebertaV2PairRM.save_pretrained`): `config.json` is the backbone's
  `DebertaV2Config` plus `n_tasks`, `drop_out` and the prefix ids; the tokenizer, prefixes included, is
  saved beside it.

Each keeps its own input building (`PairRMEncoder`: input_format "pairrm" replaces literal "[SEP]" text, and
"pairrm_hf" keeps it). Differences from the original, on purpose: a candidate's budget comes from its own
source rather than the longest source of its batch (the batch-size-one ids and logits; see
`pairrm_encoding`), and `model.safetensors` is preferred when a folder holds both weight files (no pickle).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig

from blender.packaged_models import resolve_name_or_path
from blender.rankers.checkpoint import CheckpointError
from blender.rankers.pairranker import PairRanker
from blender.rankers.pairrm_encoding import (
    PAIRRM_CANDIDATE_MAX_LENGTH,
    PAIRRM_PREFIX_TOKENS,
    PAIRRM_SOURCE_MAX_LENGTH,
    add_pairrm_tokens,
)

log = logging.getLogger(__name__)

PAIRRM_HF_ARCHITECTURE = "DebertaV2PairRM"
# The keys PairRM-hf adds to the backbone's DebertaV2Config, and the config field each prefix id sits in.
PAIRRM_HF_CONFIG_KEYS = (
    "n_tasks",
    "drop_out",
    "source_prefix_id",
    "cand1_prefix_id",
    "cand2_prefix_id",
    "cand_prefix_id",
)
PAIRRM_HF_PREFIX_KEYS = dict(zip(PAIRRM_PREFIX_TOKENS, PAIRRM_HF_CONFIG_KEYS[2:], strict=True))
# State-dict prefixes: the original's module names -> PairRanker's.
KEY_PREFIXES = {"pretrained_model.": "backbone.", "head_layer.": "head."}


# A checkpoint that cannot be read as one of these layouts (one error class for every ranker layout).
CheckpointLoadError = CheckpointError


def pairrm_layout(config: dict[str, Any]) -> str | None:
    """ "pairrm" (llm-blender's RankerConfig), "pairrm_hf" (DebertaV2PairRM) or None, from a `config.json`."""
    if "ranker_type" in config:
        return "pairrm"
    if PAIRRM_HF_ARCHITECTURE in (config.get("architectures") or []) or all(
        key in config for key in PAIRRM_HF_CONFIG_KEYS[2:5]
    ):
        return "pairrm_hf"
    return None


def task_names(n_tasks: int) -> list[str]:
    return ["quality"] if n_tasks == 1 else [f"quality_{k}" for k in range(n_tasks)]


def read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The checkpoint's tensors and whether they must cover every key (safetensors, as the original's
    `load_model`) or may leave some to the pretrained backbone (`pytorch_model.bin`, `strict=False`)."""
    safetensors_file, bin_file = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors_file.is_file():
        return load_file(str(safetensors_file)), True
    if bin_file.is_file():
        # weights_only: tensors and plain containers only; no code from the file runs.
        return torch.load(bin_file, map_location="cpu", weights_only=True), False
    raise CheckpointLoadError(f"{folder}: no model.safetensors or pytorch_model.bin")


def map_keys(state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    mapped = {}
    for key, value in state.items():
        prefix = next((p for p in KEY_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            log.warning("%s: ignoring %s (not part of a PairRM ranker)", where, key)
            continue
        mapped[KEY_PREFIXES[prefix] + key[len(prefix) :]] = value
    return mapped


def resolve_model_name(model_name: str, checkpoint: Path) -> str:
    """Where `config.json`'s `model_name` points: a folder relative to the working directory (as the original
    resolves it), else one beside the checkpoint folder, else a hub id (or a packaged short name)."""
    if Path(model_name).is_dir():
        return model_name
    beside = checkpoint.parent / model_name
    if not Path(model_name).is_absolute() and beside.is_dir():
        log.info("model_name %r: using %s, beside the checkpoint", model_name, beside)
        return str(beside)
    return resolve_name_or_path(model_name)


def _hub_error(what: str, name: str, error: Exception) -> CheckpointLoadError:
    return CheckpointLoadError(
        f"could not load the {what} {name!r} ({type(error).__name__}: {error}). Without hub access, download it "
        f"where the hub is reachable (`hf download {name} --local-dir DIR`) and pass the folder instead"
    )


def load_pairrm(
    folder: str | os.PathLike,
    backbone: str | None = None,
    map_location: str = "cpu",
) -> PairRanker:
    """Load a PairRM checkpoint folder of either layout (see the module docstring).

    Args:
        folder: the checkpoint folder (`Blender.from_pretrained` / `load_ranker` fetch a hub id first).
        backbone: for the `llm-blender/PairRM` layout, where the backbone's tokenizer and config are (a folder
            or hub id), instead of `config.json`'s `model_name`.
        map_location: the device. PairRM's `fp16: true` runs it in float16 on cuda and mps, as `loadranker`
            does; float32 elsewhere.
    Returns:
        The ranker, in eval mode.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointLoadError(f"{folder}: not a ranker checkpoint (no config.json)")
    config = json.loads(config_file.read_text())
    layout = pairrm_layout(config)
    if layout == "pairrm":
        ranker, fp16 = _load_pairrm_layout(folder, config, backbone), bool(config.get("fp16", False))
    elif layout == "pairrm_hf":
        if backbone is not None:
            raise ValueError(
                f"{folder} is a PairRM-hf checkpoint: its backbone is inside it, backbone= does not apply"
            )
        ranker, fp16 = _load_pairrm_hf_layout(folder), False
    else:
        raise CheckpointLoadError(
            f"{config_file}: neither PairRM layout (no ranker_type, no {PAIRRM_HF_ARCHITECTURE})"
        )
    ranker = ranker.to(map_location)
    if fp16 and torch.device(map_location).type in ("cuda", "mps"):
        ranker = ranker.half()
    return ranker.eval()


def _load_pairrm_layout(folder: Path, config: dict[str, Any], backbone: str | None) -> PairRanker:
    where = folder / "config.json"
    if config.get("ranker_type") != "pairranker":
        raise CheckpointLoadError(
            f"{where}: ranker_type {config.get('ranker_type')!r}; only llm-blender's pairranker checkpoints "
            "(PairRM, pair-ranker) load here"
        )
    missing = [
        k for k in ("model_name", "source_maxlength", "candidate_maxlength", "n_tasks") if k not in config
    ]
    if (missing and backbone is None) or [k for k in missing if k != "model_name"]:
        raise CheckpointLoadError(f"{where}: no {missing}")
    name = backbone or resolve_model_name(config["model_name"], folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        backbone_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise _hub_error("backbone", name, error) from error
    add_pairrm_tokens(tokenizer)
    state, complete = read_state_dict(folder)
    state = map_keys(state, folder)
    # Built at the tokenizer's size straight away: the resize `loadranker` does (rows 128100 -> 128005).
    backbone_config.vocab_size = len(tokenizer)
    encoder = AutoModel.from_config(backbone_config)
    ranker = PairRanker(
        encoder,
        tokenizer,
        task_names=task_names(int(config["n_tasks"])),
        dropout=float(config.get("drop_out", 0.05)),
        source_max_length=int(config["source_maxlength"]),
        candidate_max_length=int(config["candidate_maxlength"]),
        pooling="marker",
        input_format="pairrm",
        head_bias="head.4.bias" in state,
    )
    missing = _load_weights(ranker, state, strict=complete, where=folder)
    if missing:
        # pytorch_model.bin is loaded with strict=False: what it lacks keeps the pretrained backbone's values.
        try:
            pretrained = AutoModel.from_pretrained(name)
        except (OSError, ValueError) as error:
            raise _hub_error("backbone", name, error) from error
        pretrained.resize_token_embeddings(len(tokenizer))
        values = {f"backbone.{k}": v for k, v in pretrained.state_dict().items()}
        absent = [k for k in missing if k not in values]
        if absent:
            raise CheckpointLoadError(f"{folder}: neither pytorch_model.bin nor {name} has {absent[:5]}")
        ranker.load_state_dict({k: values[k] for k in missing}, strict=False)
    return ranker


def _load_pairrm_hf_layout(folder: Path) -> PairRanker:
    config = AutoConfig.from_pretrained(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise CheckpointLoadError(
            f"{folder}: no readable tokenizer ({type(error).__name__}: {error})"
        ) from error
    ids = dict(
        zip(PAIRRM_PREFIX_TOKENS, tokenizer.convert_tokens_to_ids(list(PAIRRM_PREFIX_TOKENS)), strict=True)
    )
    for token, key in PAIRRM_HF_PREFIX_KEYS.items():
        if getattr(config, key, None) != ids[token]:
            raise CheckpointLoadError(
                f"{folder}: config.json has {key}={getattr(config, key, None)} but the tokenizer has {token} at "
                f"{ids[token]}"
            )
    n_tasks, drop_out = int(config.n_tasks), float(config.drop_out)
    encoder = AutoModel.from_config(_backbone_config(config))
    state, complete = read_state_dict(folder)
    state = map_keys(state, folder)
    ranker = PairRanker(
        encoder,
        tokenizer,
        task_names=task_names(n_tasks),
        dropout=drop_out,
        source_max_length=PAIRRM_SOURCE_MAX_LENGTH,
        candidate_max_length=PAIRRM_CANDIDATE_MAX_LENGTH,
        pooling="marker",
        input_format="pairrm_hf",
        head_bias="head.4.bias" in state,
    )
    _load_weights(ranker, state, strict=True, where=folder)
    return ranker


def _backbone_config(config: PretrainedConfig) -> PretrainedConfig:
    """The DebertaV2Config without PairRM-hf's own keys (they belong to the ranker, not the encoder)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in PAIRRM_HF_CONFIG_KEYS}
    settings.pop("architectures", None)
    return type(config).from_dict(settings)


def _load_weights(ranker: PairRanker, state: dict[str, torch.Tensor], strict: bool, where: Path) -> list[str]:
    """Load `state`; returns the keys it lacks (an error when `strict`)."""
    result = ranker.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        if strict:
            raise CheckpointLoadError(
                f"{where}: weights the ranker does not have: {result.unexpected_keys[:5]}"
            )
        log.warning(
            "%s: ignoring %d weights the ranker does not have (strict=False, as the original): %s",
            where,
            len(result.unexpected_keys),
            result.unexpected_keys[:5],
        )
    if result.missing_keys:
        if strict:
            raise CheckpointLoadError(
                f"{where}: the checkpoint lacks {result.missing_keys[:5]} (of {len(result.missing_keys)})"
            )
        log.warning(
            "%s: %d keys not in pytorch_model.bin keep the pretrained backbone's values: %s",
            where,
            len(result.missing_keys),
            result.missing_keys[:5],
        )
    return list(result.missing_keys)
