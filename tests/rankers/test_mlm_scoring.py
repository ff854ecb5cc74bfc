import logging

import numpy as np
import pytest
import torch
from tokenizers.processors import TemplateProcessing
from transformers import BertConfig, BertForMaskedLM

from blender.rankers import InferenceSettings, MLMScorer, build_mlm_scorer, load_ranker
from blender.records import parse_record
from tests.conftest import make_raw_record, make_tiny_encoder, make_tiny_tokenizer

QUIET = InferenceSettings(precision="fp32", show_progress=False)


def tokenizer_with_mask():
    tokenizer = make_tiny_tokenizer()
    tokenizer.add_special_tokens({"mask_token": "[MASK]"})
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    # BERT's pair template too: [CLS] A [SEP] B [SEP], B with token type 1.
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def tiny_mlm(tokenizer, seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForMaskedLM(config).eval()


def naive_pll(model, ids: list[int], positions: list[int], mask_id: int, types=None) -> float:
    """Mask one position at a time, one forward pass each, and sum log P(true token)."""
    total = 0.0
    for p in positions:
        masked = list(ids)
        masked[p] = mask_id
        inputs = {"input_ids": torch.tensor([masked])}
        if types is not None:
            inputs["token_type_ids"] = torch.tensor([types])
        with torch.no_grad():
            logits = model(**inputs).logits[0, p]
        total += torch.log_softmax(logits, -1)[ids[p]].item()
    return total


def test_pll_equals_one_mask_at_a_time():
    tokenizer = tokenizer_with_mask()
    scorer = MLMScorer(tiny_mlm(tokenizer), tokenizer, head="mlm", candidate_max_length=5)
    record = parse_record(make_raw_record(0, 3), "t")
    (scores,) = scorer.score_records(
        [record], InferenceSettings(precision="fp32", max_batch_size=3, show_progress=False)
    )
    for k, candidate in enumerate(record.candidates):
        ids, _, positions = scorer.sequence(record.source, candidate.text)
        assert ids[0] == tokenizer.cls_token_id and positions == list(range(1, len(ids) - 1))
        assert scores[k] == pytest.approx(
            naive_pll(scorer.model, ids, positions, tokenizer.mask_token_id), abs=1e-4
        )
    assert scorer.forward_passes(record) == sum(
        len(scorer.sequence("", c.text)[2]) for c in record.candidates
    )


def test_source_context_scores_only_the_candidate_tokens():
    tokenizer = tokenizer_with_mask()
    scorer = MLMScorer(
        tiny_mlm(tokenizer),
        tokenizer,
        head="mlm",
        context="source",
        source_max_length=2,
        candidate_max_length=3,
    )
    ids, types, positions = scorer.sequence("the answer is good", "one two three yes no")
    words = tokenizer.convert_ids_to_tokens(ids)
    assert words == ["[CLS]", "the", "answer", "[SEP]", "one", "two", "three", "[SEP]"]
    assert positions == [4, 5, 6] and types == [0, 0, 0, 0, 1, 1, 1, 1]
    record = parse_record({**make_raw_record(0, 2), "instruction": "the answer is good"}, "t")
    (scores,) = scorer.score_records([record], QUIET)
    ids, types, positions = scorer.sequence(record.source, record.candidates[1].text)
    assert scores[1] == pytest.approx(
        naive_pll(scorer.model, ids, positions, tokenizer.mask_token_id, types), abs=1e-4
    )


def test_mean_normalisation_divides_by_the_scored_tokens():
    tokenizer = tokenizer_with_mask()
    model = tiny_mlm(tokenizer)
    record = parse_record(make_raw_record(0, 3), "t")
    total = MLMScorer(model, tokenizer, normalize="sum").score_records([record], QUIET)[0]
    mean = MLMScorer(model, tokenizer, normalize="mean").score_records([record], QUIET)[0]
    counts = [len(MLMScorer(model, tokenizer).sequence("", c.text)[2]) for c in record.candidates]
    np.testing.assert_allclose(mean, total / np.array(counts), atol=1e-6)


def test_a_checkpoint_without_mlm_head_falls_back_to_tied_embeddings(tmp_path, caplog):
    tokenizer = tokenizer_with_mask()
    make_tiny_encoder(len(tokenizer)).save_pretrained(tmp_path / "encoder")  # a BertModel: no cls.predictions
    tokenizer.save_pretrained(tmp_path / "encoder")
    with caplog.at_level(logging.WARNING):
        scorer = build_mlm_scorer(str(tmp_path / "encoder"))
    assert scorer.head == "tied" and "no masked-LM head" in caplog.text
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        build_mlm_scorer(str(tmp_path / "encoder"), head="mlm")
    # Tied: logits are hidden · Eᵀ at the masked position.
    ids, types, _ = scorer.sequence("", "good bad")
    masked = torch.tensor([ids])
    masked[0, 1] = tokenizer.mask_token_id
    got = scorer.masked_log_probs(
        masked, torch.ones_like(masked), torch.tensor([types]), torch.tensor([1]), torch.tensor([ids[1]])
    )
    hidden = scorer.model.base_model(input_ids=masked).last_hidden_state[0, 1]
    expected = torch.log_softmax(hidden @ scorer.model.get_input_embeddings().weight.T, -1)[ids[1]]
    torch.testing.assert_close(got[0], expected)
    # Saved and loaded, it keeps its head mode and its scores.
    record = parse_record(make_raw_record(0, 2), "t")
    scorer.save(tmp_path / "ckpt")
    again = load_ranker(tmp_path / "ckpt")
    assert isinstance(again, MLMScorer) and again.head == "tied"
    np.testing.assert_allclose(
        again.score_records([record], QUIET)[0], scorer.score_records([record], QUIET)[0], atol=1e-5
    )


def test_a_tokenizer_without_mask_token_is_refused():
    tokenizer = make_tiny_tokenizer()
    with pytest.raises(ValueError, match="no mask token"):
        MLMScorer(tiny_mlm(tokenizer), tokenizer)
