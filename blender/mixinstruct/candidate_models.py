"""The LLMs that answer MixInstruct's instructions, and how they generate (the paper's decoding by default).

Plain settings shared by the generation back ends (`backends.py`) and the generation stage (`generate.py`), so
neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from blender.mixinstruct.templates import get_template, guess_template

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class CandidateModel:
    """One model that answers every instruction.

    Attributes:
        name: the candidates' `model` field; the paper uses the checkpoint's basename.
        checkpoint: hub id or folder of the weights.
        template: a key of `blender.mixinstruct.templates.TEMPLATES`, or "auto" for the name matching the
            original did (`guess_template`).
        tokenizer: hub id or folder of the tokenizer when it is not the checkpoint's (Baize: huggyllama/llama-7b).
        dtype: "float16" (the paper), "bfloat16" or "float32".
        seq2seq: an encoder-decoder (flan-t5), loaded with `AutoModelForSeq2SeqLM`.
        trust_remote_code: run the checkpoint's own modelling code (MOSS, ChatGLM).
        backend: "transformers" or "vllm" for this model only; None follows the settings.
        tiny: settings for `blender.mixinstruct.tiny_models.build_tiny_model` to create a random model at
            `checkpoint` when that folder does not exist (offline configs and tests); None for real models.
    """

    name: str
    checkpoint: str
    template: str = "auto"
    tokenizer: str | None = None
    dtype: str = "float16"
    seq2seq: bool = False
    trust_remote_code: bool = False
    backend: str | None = None
    tiny: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.name}: dtype {self.dtype!r} is not one of {sorted(DTYPES)}")
        get_template(self.template_name)

    @property
    def template_name(self) -> str:
        """The template in use, with "auto" resolved."""
        return guess_template(self.checkpoint) if self.template == "auto" else self.template


@dataclass
class CandidateGenerationSettings:
    """How candidates are generated; the defaults are the paper's.

    Attributes:
        backend: "vllm" (the engine for scale, an optional extra) or "transformers" (batched `generate`, any
            device; the offline fixture build).
        decoding_method: "top_p_sampling" (the paper) or "greedy"; saved in each candidate.
        top_p: nucleus mass (the paper: 1.0).
        top_k: sample among the k likeliest tokens; 0 for all. The original's `generate` call set no
            top_k, so transformers' default of 50 applied; that is kept here, for both back ends.
        temperature: sampling temperature.
        repetition_penalty: 1.0 is none.
        max_new_tokens: longest answer.
        prompt_max_tokens: the user's text is cut to this many tokens before the template wraps it.
        batch_size: prompts per `generate` call (transformers back end).
        shard_size: instructions per shard: the unit of resuming and of data parallelism.
        seed: shard i is generated under seed + i.
        device: "auto", "cpu", "cuda", "cuda:1", ... (transformers back end).
        prefer_tokenizer_chat_template: use the tokenizer's chat template when it has one, else the
            model's named template. The paper's checkpoints predate chat templates, so the default (False)
            always uses the named template.
        worker_index: this process's index among `num_workers`; it generates shards i with
            i % num_workers == worker_index (data parallelism over processes / GPU groups).
        num_workers: processes sharing the shards.
        tensor_parallel_size: GPUs per model (vLLM).
        gpu_memory_utilization: share of GPU memory vLLM may take.
    """

    backend: str = "vllm"
    decoding_method: str = "top_p_sampling"
    top_p: float = 1.0
    top_k: int = 50
    temperature: float = 0.7
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    prompt_max_tokens: int = 256
    batch_size: int = 4
    shard_size: int = 1000
    seed: int = 42
    device: str = "auto"
    prefer_tokenizer_chat_template: bool = False
    worker_index: int = 0
    num_workers: int = 1
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        if self.decoding_method not in ("top_p_sampling", "greedy"):
            raise ValueError(f"decoding_method {self.decoding_method!r}: choose top_p_sampling or greedy")
        if not 0 <= self.worker_index < self.num_workers:
            raise ValueError(
                f"worker_index {self.worker_index} is not in [0, num_workers={self.num_workers})"
            )
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("shard_size and batch_size must be positive")
