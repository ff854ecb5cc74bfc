"""Sample n answers per prompt from a generator, for best-of-n: a transformers model or a vLLM `LLM`.

The prompt is the instruction, a newline and the input when there is one, as llm-blender's `n_generate`
builds it (`chat_template=True` wraps it as one user message in the tokenizer's chat template instead).
Sampling modes as llm-blender's: "top_p_sampling" (do_sample, top_p 1.0, temperature 0.7 unless given),
"top_k_sampling" (top_k 50, temperature 0.7), or None to take `generate_kwargs` as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SAMPLING_MODES = ("top_p_sampling", "top_k_sampling", None)


def build_prompts(
    instructions: Sequence[str],
    inputs: Sequence[str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    chat_template: bool = False,
) -> list[str]:
    """One prompt per instruction: "instruction\\ninput" (or the instruction alone), optionally chat-templated."""
    if inputs is not None and len(inputs) != len(instructions):
        raise ValueError(f"{len(instructions)} instructions but {len(inputs)} inputs")
    texts = [
        f"{x}\n{y}" if inputs is not None and y else x
        for x, y in zip(instructions, inputs if inputs is not None else [""] * len(instructions), strict=True)
    ]
    if not chat_template:
        return texts
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True needs a tokenizer with a chat template")
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
        )
        for t in texts
    ]


def sampling_kwargs(sampling_mode: str | None, generate_kwargs: dict[str, Any]) -> dict[str, Any]:
    """llm-blender's defaults for a sampling mode, under what the caller set."""
    if sampling_mode not in SAMPLING_MODES:
        raise ValueError(f"sampling_mode={sampling_mode!r}; choose one of {list(SAMPLING_MODES)}")
    settings = dict(generate_kwargs)
    if sampling_mode == "top_k_sampling":
        settings = {"do_sample": True, "top_k": 50, "temperature": 0.7, **settings}
    elif sampling_mode == "top_p_sampling":
        settings = {"do_sample": True, "top_p": 1.0, "temperature": 0.7, **settings}
    return settings


def _is_vllm_model(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "vllm"


def sample_candidates(
    model: Any,
    tokenizer: PreTrainedTokenizerBase | None,
    prompts: Sequence[str],
    n: int = 5,
    sampling_mode: str | None = "top_p_sampling",
    batch_size: int = 4,
    show_progress: bool = False,
    add_special_tokens: bool = True,
    **generate_kwargs: Any,
) -> list[list[str]]:
    """n sampled answers per prompt.

    Args:
        model: a transformers `PreTrainedModel` that generates (decoder-only or encoder-decoder), or a
            `vllm.LLM`.
        tokenizer: the model's tokenizer (unused by vLLM, which has its own).
        prompts: the full prompt texts.
        n: answers per prompt.
        sampling_mode: see the module docstring.
        batch_size: prompts per `generate` call (transformers only; vLLM batches itself).
        show_progress: a progress bar over batches.
        add_special_tokens: let the tokenizer add its special tokens (False for chat-templated prompts, which
            carry them already).
        generate_kwargs: more `generate` arguments (`max_new_tokens`, `temperature`, ...); for vLLM, the
            `SamplingParams` fields among them (`max_new_tokens` becomes `max_tokens`).
    Returns:
        Per prompt, its n answers (the prompt itself not included).
    """
    if n < 1:
        raise ValueError(f"n={n}: need at least one sample per prompt")
    settings = sampling_kwargs(sampling_mode, generate_kwargs)
    if _is_vllm_model(model):
        return _sample_vllm(model, prompts, n, settings)
    if not isinstance(model, PreTrainedModel) or not model.can_generate():
        raise TypeError(
            f"model must be a transformers model that generates or a vllm.LLM, got {type(model).__name__}"
        )
    if tokenizer is None:
        raise ValueError("a transformers model needs its tokenizer")
    if "max_new_tokens" not in settings and "max_length" not in settings:
        settings["max_new_tokens"] = 256
        log.info("max_new_tokens not given: sampling up to 256 new tokens")
    decoder_only = not model.config.is_encoder_decoder
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    if decoder_only:
        tokenizer.padding_side = "left"  # generation continues from the last position of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: list[list[str]] = []
    try:
        with torch.inference_mode():
            starts = range(0, len(prompts), batch_size)
            for start in tqdm(starts, desc="sampling", disable=not show_progress, leave=False):
                batch = tokenizer(
                    list(prompts[start : start + batch_size]),
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=add_special_tokens,
                )
                batch = {k: v.to(model.device) for k, v in batch.items()}
                ids = model.generate(
                    **batch, num_return_sequences=n, pad_token_id=tokenizer.pad_token_id, **settings
                )
                if decoder_only:
                    ids = ids[:, batch["input_ids"].shape[1] :]
                texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
                out += [texts[k : k + n] for k in range(0, len(texts), n)]
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return out


def _sample_vllm(model: Any, prompts: Sequence[str], n: int, settings: dict[str, Any]) -> list[list[str]]:
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "this model is a vLLM object but vllm cannot be imported; install the extra: pip install 'blender[vllm]'"
        ) from error
    settings = dict(settings)
    settings.pop("do_sample", None)  # vLLM samples whenever temperature > 0
    if "max_new_tokens" in settings:
        settings["max_tokens"] = settings.pop("max_new_tokens")
    fields = {k: v for k, v in settings.items() if hasattr(vllm.SamplingParams(), k)}
    ignored = sorted(set(settings) - set(fields))
    if ignored:
        log.warning("vLLM's SamplingParams has no %s; ignored", ignored)
    outputs = model.generate(list(prompts), vllm.SamplingParams(n=n, **fields))
    return [[choice.text for choice in output.outputs] for output in outputs]
