"""Random tiny models with a tokenizer made on the spot, for offline configs and tests: nothing is downloaded.

`build_tiny_model(folder, model_type="llama")` writes a folder that `AutoTokenizer` / `AutoModelFor*`
load like any checkpoint (audiocraft's `get_debug_lm_model` idea). The tokenizer is byte-level BPE
trained on a few sentences, so any text round-trips; the weights are random under a fixed seed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from blender.files import write_dir_atomic

log = logging.getLogger(__name__)

_CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT:",
    "The answer is good. The answer is bad. Give three tips for staying healthy and explain why.",
    "Translate the sentence, summarize the paragraph, write a poem about the sea, name a prime number.",
]
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
# A minimal chat template, for testing the tokenizer-template path.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_tokenizer(vocab_size: int = 384, chat_template: str | None = None):  # noqa: ANN201 - PreTrainedTokenizerFast
    """A byte-level BPE tokenizer trained on a few sentences.

    Args:
        vocab_size: the vocabulary size (256 bytes + merges + special tokens).
        chat_template: a Jinja chat template to attach, or None for a tokenizer without one.
    Returns:
        A `PreTrainedTokenizerFast` with pad <pad>, bos <s>, eos </s>, unk <unk> (ids 0-3).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def _tiny_config(model_type: str, vocab_size: int, tokenizer) -> tuple[object, object]:  # noqa: ANN001
    """(config, model class) of a 2-layer, 32-wide model of `model_type`."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    ids = dict(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if model_type == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            **ids,
        )
        return config, LlamaForCausalLM
    if model_type == "gemma3":
        # Gemma 3's text model (the packaged gemma3-270m's architecture), one sliding and one global layer.
        config = Gemma3TextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=4096,
            **ids,
        )
        return config, Gemma3ForCausalLM
    if model_type == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=4096, **ids)
        return config, GPT2LMHeadModel
    if model_type == "t5":
        config = T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            decoder_start_token_id=tokenizer.pad_token_id,
            **ids,
        )
        return config, T5ForConditionalGeneration
    raise ValueError(f"unknown tiny model_type {model_type!r}; choose llama, gemma3, gpt2 or t5")


def build_tiny_model(
    folder: str | Path,
    model_type: str = "llama",
    seed: int = 0,
    chat_template: bool = False,
    vocab_size: int = 384,
) -> Path:
    """Write a random tiny model and its tokenizer to `folder`, unless it is already there.

    The folder appears whole (written beside it, then renamed), so a killed build leaves no half model.

    Args:
        folder: where the checkpoint goes.
        model_type: "llama", "gemma3" or "gpt2" (causal) or "t5" (seq2seq).
        seed: seed of the random weights.
        chat_template: attach `TINY_CHAT_TEMPLATE` to the tokenizer.
        vocab_size: tokenizer and embedding size.
    Returns:
        The folder.
    """
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    tokenizer = build_tiny_tokenizer(vocab_size, TINY_CHAT_TEMPLATE if chat_template else None)
    config, cls = _tiny_config(model_type, len(tokenizer), tokenizer)
    torch.manual_seed(seed)
    model = cls(config)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    write_dir_atomic(folder, fill)
    log.info("built tiny %s model at %s", model_type, folder)
    return folder
