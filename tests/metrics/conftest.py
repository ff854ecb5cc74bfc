"""Tiny random models for the metric tests, built from config and saved to a temp folder: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertModel,
    PreTrainedTokenizerFast,
)

WORDS = "the answer is good bad a cat sat on mat dog ran fast slow . ,".split()
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BART_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def word_level_tokenizer(
    specials: list[str], bos: str, eos: str, max_length: int, **named_tokens: str
) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer that wraps each text as `bos text eos`, like BERT's or BART's.

    Args:
        specials: special tokens, padding first and unknown second.
        bos: token opening each text.
        eos: token closing each text.
        max_length: the tokenizer's `model_max_length` (truncation length).
        named_tokens: special-token roles, e.g. `cls_token="[CLS]"`.
    Returns:
        The tokenizer.
    """
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token=specials[1]))
    core.pre_tokenizer = Whitespace()
    core.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B:1 {eos}:1",
        special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=specials[0],
        unk_token=specials[1],
        model_max_length=max_length,
        **named_tokens,
    )


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 32) and a BERT-style tokenizer, saved as a local model folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = word_level_tokenizer(
        BERT_SPECIALS, bos="[CLS]", eos="[SEP]", max_length=64, cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1+1-layer BART (d_model 16) and a BART-style tokenizer, saved as a local model folder."""
    folder = tmp_path_factory.mktemp("tiny_bart")
    tokenizer = word_level_tokenizer(
        BART_SPECIALS, bos="<s>", eos="</s>", max_length=64, bos_token="<s>", eos_token="</s>"
    )
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=3,  # BART starts decoding from </s>
        forced_eos_token_id=3,
    )
    torch.manual_seed(0)
    # Scale the random init up so the log-probabilities differ visibly across tokens and contexts.
    model = BartForConditionalGeneration(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse hub access at once (as HF_HUB_OFFLINE=1 does) instead of retrying a network that is not there."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
