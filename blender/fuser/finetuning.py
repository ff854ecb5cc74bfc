"""Which of a fuser's weights training updates: all, all but the embedding, or LoRA adapters (through `peft`).

On a CPU the choice decides how much a fixed training time buys (docs/results/fuser.md measures val loss per
minute of each on Gemma 3 270M). Gemma's tied 262k-token embedding is ~170M of its 268M parameters: freezing it
drops AdamW's state for them and the gradient of the output projection's weight (the largest matmul of the
backward pass); LoRA freezes every pretrained weight and trains low-rank adapters on the chosen projections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

log = logging.getLogger(__name__)

MODES = ("full", "frozen_embeddings", "lora")
LORA_MISSING = (
    "fuser.finetuning.mode=lora needs the `peft` package: pip install peft (make setup installs it)"
)


@dataclass
class FinetuneSettings:
    """What training updates (`fuser.finetuning`).

    Attributes:
        mode: "full" (every weight), "frozen_embeddings" (all but the input embedding and, when tied, the
            output projection that shares it), or "lora" (peft LoRA adapters; the pretrained weights frozen).
        lora_r: the adapters' rank.
        lora_alpha: their scale numerator (the update is scaled by alpha / r).
        lora_dropout: dropout on the adapters' input.
        lora_target_modules: names of the linear layers that get adapters (peft's `target_modules`).
    """

    mode: str = "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fuser.finetuning.mode={self.mode!r}; choose one of {list(MODES)}")
        if self.mode == "lora" and self.lora_r < 1:
            raise ValueError(f"fuser.finetuning.lora_r={self.lora_r}: the rank must be at least 1")


def is_peft_model(model: nn.Module) -> bool:
    """Whether `model` is wrapped by peft (its `save_pretrained` writes the adapters only)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def apply_finetuning(model: nn.Module, settings: FinetuneSettings) -> nn.Module:
    """`model` set up for `settings.mode`: frozen parameters, or wrapped in LoRA adapters (a `PeftModel`).

    Args:
        model: a Hugging Face model with `get_input_embeddings()`.
        settings: the mode and LoRA shape.
    Returns:
        The model to train (the same object unless LoRA wraps it).
    """
    if settings.mode == "frozen_embeddings":
        embedding = model.get_input_embeddings()
        for parameter in embedding.parameters():
            parameter.requires_grad_(False)
        output = model.get_output_embeddings()
        if output is not None and output.weight is not embedding.weight:
            log.info("the output projection is not tied to the embedding: it stays trainable")
    elif settings.mode == "lora":
        try:
            from peft import LoraConfig, TaskType, get_peft_model
        except ImportError as error:
            raise ImportError(LORA_MISSING) from error
        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM if not model.config.is_encoder_decoder else TaskType.SEQ_2_SEQ_LM,
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=list(settings.lora_target_modules),
        )
        model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "fine-tuning %s: %.1fM of %.1fM parameters trainable", settings.mode, trainable / 1e6, total / 1e6
    )
    return model


__all__ = ["FinetuneSettings", "MODES", "apply_finetuning", "is_peft_model"]
