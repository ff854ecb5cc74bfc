import pytest

from blender.rankers.encoding import PAIR_SPECIAL_TOKENS, PairEncoder, add_pair_tokens


@pytest.fixture
def encoder(tiny_tokenizer):
    add_pair_tokens(tiny_tokenizer)
    return PairEncoder(tiny_tokenizer, source_max_length=8, candidate_max_length=6)


def test_pair_layout_is_the_originals(encoder, tiny_tokenizer):
    encoded = encoder.encode_record_texts("the answer is", ["good", "bad a b c d e f g"])
    ids = encoder.pair_ids(encoded, 0, 1)
    tokens = tiny_tokenizer.convert_ids_to_tokens(ids)
    assert tokens == [
        "[CLS]",
        "<|source|>",
        "the",
        "answer",
        "is",
        "[SEP]",
        "[CLS]",
        "<|candidate1|>",
        "good",
        "[SEP]",
        "[CLS]",
        "<|candidate2|>",
        "bad",
        "a",
        "b",
        "[SEP]",
    ]
    # Each part stays within its own budget, special tokens included.
    assert len(tokens[10:]) == 6


def test_each_marker_appears_once_even_if_a_text_contains_it(encoder, tiny_tokenizer):
    encoded = encoder.encode_record_texts("the <|candidate1|> [SEP]", ["<|source|>", "good"])
    ids = encoder.pair_ids(encoded, 0, 1)
    for token in PAIR_SPECIAL_TOKENS:
        assert ids.count(tiny_tokenizer.convert_tokens_to_ids(token)) == 1
    assert ids.count(tiny_tokenizer.sep_token_id) == 3


def test_head_tail_keeps_the_end(tiny_tokenizer):
    add_pair_tokens(tiny_tokenizer)
    encoder = PairEncoder(tiny_tokenizer, source_max_length=8, candidate_max_length=9, truncation="head_tail")
    (ids,) = encoder.encode_record_texts("the", ["a b c d e f g h one"]).candidates
    assert tiny_tokenizer.convert_ids_to_tokens(ids) == ["a", "b", "c", "d", "h", "one"]


def test_padding_and_mask(encoder):
    batch = encoder.pad([[5, 6, 7], [5]])
    pad = encoder.pad_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_rejects_tokenizer_without_markers_and_tiny_budgets(tiny_tokenizer):
    with pytest.raises(ValueError, match="add_pair_tokens"):
        PairEncoder(tiny_tokenizer)
    add_pair_tokens(tiny_tokenizer)
    with pytest.raises(ValueError, match="special tokens"):
        PairEncoder(tiny_tokenizer, source_max_length=3)


def test_length_hint_leads_each_candidate_within_its_budget(tiny_tokenizer):
    add_pair_tokens(tiny_tokenizer)
    encoder = PairEncoder(tiny_tokenizer, source_max_length=8, candidate_max_length=9, length_hint=True)
    short, long = encoder.encode_record_texts("the", ["good", "a b c d e f g h one"]).candidates
    hint_short = tiny_tokenizer("(1 words)", add_special_tokens=False)["input_ids"]
    hint_long = tiny_tokenizer("(9 words)", add_special_tokens=False)["input_ids"]
    assert len(hint_long) == 4  # "(", "9", "words", ")"
    assert short == hint_short + tiny_tokenizer.convert_tokens_to_ids(["good"])
    # The hint counts against the 6-token body budget: two words of the answer are left.
    assert long == hint_long + tiny_tokenizer.convert_tokens_to_ids(["a", "b"])
    # Off by default (the paper's input).
    plain = PairEncoder(tiny_tokenizer, source_max_length=8, candidate_max_length=9)
    assert plain.encode_record_texts("the", ["good"]).candidates == [
        tiny_tokenizer.convert_tokens_to_ids(["good"])
    ]
