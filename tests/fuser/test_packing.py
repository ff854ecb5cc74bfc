"""Packing and truncation against hand-written expectations (word-level tokenizer: one word, one id)."""

from __future__ import annotations

import pytest

from blender.fuser.packing import PackingSettings, pack_source, pack_target, source_text, truncate_candidate
from tests.fuser.conftest import make_fuser_tokenizer

CLOSING = "Summarize candidates into a better one for the given instruction :".split()


def words(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


def test_candidate_cut_to_its_budget_and_marked(fuser_tokenizer):
    settings = PackingSettings(candidate_max_length=3)
    assert truncate_candidate(fuser_tokenizer, "b c d e f", settings) == "b c d..."
    assert truncate_candidate(fuser_tokenizer, "b c d", settings) == "b c d"  # exactly the budget: not cut


def test_source_as_the_original(fuser_tokenizer):
    settings = PackingSettings(
        candidate_max_length=3,
        max_source_length=100,
        add_special_tokens=True,
        separator=None,
        answer_prefix="",
    )
    body, closing = source_text(fuser_tokenizer, "name a prime", "", ["two", "b c d e"], settings)
    # BERT has no "</s>": [SEP] joins the parts; the empty input keeps its part, as the original.
    assert body == "Instruction: name a prime[SEP]Input: [SEP]Candidate 1: two[SEP]Candidate 2: b c d..."
    assert closing == "[SEP]Summarize candidates into a better one for the given instruction:"
    ids = pack_source(fuser_tokenizer, "name a prime", "", ["two", "b c d e"], settings)
    assert words(fuser_tokenizer, ids) == [
        "[CLS]",
        "Instruction",
        ":",
        "name",
        "a",
        "prime",
        "[SEP]",
        "Input",
        ":",
        "[SEP]",
        "Candidate",
        "1",
        ":",
        "two",
        "[SEP]",
        "Candidate",
        "2",
        ":",
        "b",
        "c",
        "d",
        "...",
        "[SEP]",
        *CLOSING,
        "[SEP]",
    ]


def test_t5_style_markers_and_no_special_tokens():
    tokenizer = make_fuser_tokenizer(extra_ids=True, wrap=False)
    settings = PackingSettings(candidate_max_length=8, max_source_length=100, separator="[SEP]")
    ids = pack_source(tokenizer, "name", "it", ["two", "three"], settings)
    assert words(tokenizer, ids) == [
        "Instruction",
        ":",
        "name",
        "[SEP]",
        "Input",
        ":",
        "it",
        "[SEP]",
        "Candidate",
        "1",
        ":",
        "<extra_id_1>",
        ":",
        "two",
        "[SEP]",
        "Candidate",
        "2",
        ":",
        "<extra_id_2>",
        ":",
        "three",
        "[SEP]",
        *CLOSING,
    ]


def test_whole_cut_to_the_source_budget_keeps_the_closing_instruction(fuser_tokenizer):
    settings = PackingSettings(
        candidate_max_length=8,
        max_source_length=24,
        add_special_tokens=True,
        separator=None,
        answer_prefix="",
    )
    ids = pack_source(
        fuser_tokenizer, "name a prime", "", ["b c d e f g h", "two three five seven"], settings
    )
    assert len(ids) == 24
    # 24 = [CLS] + 10 body tokens + [SEP] + 11 closing tokens + [SEP]: the body's end is cut, the closing kept.
    assert words(fuser_tokenizer, ids) == [
        "[CLS]",
        "Instruction",
        ":",
        "name",
        "a",
        "prime",
        "[SEP]",
        "Input",
        ":",
        "[SEP]",
        "Candidate",
        "[SEP]",
        *CLOSING,
        "[SEP]",
    ]


def test_budget_too_small_is_an_error(fuser_tokenizer):
    with pytest.raises(ValueError, match="max_source_length=10 leaves no room"):
        pack_source(
            fuser_tokenizer,
            "name",
            "",
            ["two"],
            PackingSettings(max_source_length=10, add_special_tokens=True),
        )


def test_target_cut_then_ended(fuser_tokenizer):
    settings = PackingSettings(max_target_length=4)
    assert words(fuser_tokenizer, pack_target(fuser_tokenizer, "two three five seven", settings)) == [
        "two",
        "three",
        "five",
        "[SEP]",
    ]
    assert words(fuser_tokenizer, pack_target(fuser_tokenizer, "two", settings)) == ["two", "[SEP]"]


def test_marker_lookup_reads_one_token_not_the_whole_vocabulary(monkeypatch):
    """The T5 marker is looked up per candidate: `get_vocab()` there rebuilt Gemma's 262k-entry dict each time."""
    with_markers, without = make_fuser_tokenizer(extra_ids=True), make_fuser_tokenizer()
    for tokenizer in (with_markers, without):
        monkeypatch.setattr(tokenizer, "get_vocab", lambda: pytest.fail("get_vocab() called while packing"))
    settings = PackingSettings(candidate_max_length=3, separator=None, answer_prefix="")
    body, _ = source_text(with_markers, "name a prime", "", ["two"], settings)
    assert "Candidate 1: <extra_id_1>: two" in body
    body, _ = source_text(without, "name a prime", "", ["two"], settings)
    assert "Candidate 1: two" in body and "extra_id" not in body  # absent: not mistaken for [UNK]
