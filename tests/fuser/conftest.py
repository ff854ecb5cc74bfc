"""A word-level tokenizer that knows the fuser's template words, so packed ids read as words."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

TEMPLATE_WORDS = "Instruction Input Candidate Summarize candidates into a better one for the given instruction : ...".split()
ANSWER_WORDS = "name prime two three five seven is it b c d e f g h".split()


def make_fuser_tokenizer(extra_ids: bool = False, wrap: bool = True) -> PreTrainedTokenizerFast:
    """[PAD] [UNK] [CLS] [SEP] (+ <extra_id_1..3> for the T5-style marker), digits, template and answer words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (
        [f"<extra_id_{k}>" for k in (1, 2, 3)] if extra_ids else []
    )
    words = [*specials, *"0123456789", *TEMPLATE_WORDS, *ANSWER_WORDS]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = Whitespace()
    if wrap:
        core.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    if extra_ids:
        tokenizer.add_special_tokens({"additional_special_tokens": [f"<extra_id_{k}>" for k in (1, 2, 3)]})
    return tokenizer


@pytest.fixture
def fuser_tokenizer() -> PreTrainedTokenizerFast:
    return make_fuser_tokenizer()


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_thread):
    """Every fuser test runs on one thread (see `one_thread` in tests/conftest.py)."""
