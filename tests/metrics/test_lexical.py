"""BLEU and ROUGE against numbers worked out by hand and against the packages called directly."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from blender.metrics import BLEU, ROUGE

CANDIDATES = ["the cat sat on the mat", "the cats are sitting", "a dog ran fast today", ""]
REFERENCES = ["the cat sat on the mat", "the cat sat on the mat", "the dog ran fast", "the dog ran fast"]


def test_bleu_hand_checked() -> None:
    # Candidate 2 vs "the dog ran fast": 1-4-gram matches 3/5, 2/4, 1/3, 0/2; effective order with sacrebleu's
    # "exp" smoothing turns the zero 4-gram count into 1 / (2 * 2); no brevity penalty (5 >= 4 tokens).
    precisions = [3 / 5, 2 / 4, 1 / 3, 1 / (2 * 2)]
    expected = 100 * math.exp(sum(math.log(p) for p in precisions) / 4)
    scores = BLEU(show_progress=False).score(CANDIDATES, REFERENCES)
    assert scores[0] == pytest.approx(100.0)
    assert scores[2] == pytest.approx(expected, abs=1e-9)
    assert scores[3] == 0.0


def test_bleu_equals_sacrebleu_sentence_bleu() -> None:
    expected = [sacrebleu.sentence_bleu(c, [r]).score for c, r in zip(CANDIDATES, REFERENCES, strict=True)]
    assert BLEU(show_progress=False).score(CANDIDATES, REFERENCES) == expected


def test_rouge_hand_checked() -> None:
    # "the cats are sitting" vs "the cat sat on the mat", stemmed: "the cat are sit" vs "the cat sat on the mat".
    # Unigram overlap {the, cat} = 2: P = 2/4, R = 2/6, F = 0.4. Bigram overlap {the cat} = 1: P = 1/3, R = 1/5.
    rouge1 = ROUGE("rouge1", show_progress=False).score(CANDIDATES, REFERENCES)
    rouge2 = ROUGE("rouge2", show_progress=False).score(CANDIDATES, REFERENCES)
    assert rouge1[:2] == pytest.approx([1.0, 0.4])
    assert rouge2[1] == pytest.approx(2 * (1 / 3) * (1 / 5) / (1 / 3 + 1 / 5))
    assert rouge1[3] == 0.0


@pytest.mark.parametrize("rouge_type", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
def test_rouge_equals_rouge_score(rouge_type: str) -> None:
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)
    expected = [scorer.score(r, c)[rouge_type].fmeasure for c, r in zip(CANDIDATES, REFERENCES, strict=True)]
    assert ROUGE(rouge_type, show_progress=False).score(CANDIDATES, REFERENCES) == expected


def test_rouge_unknown_type_lists_choices() -> None:
    with pytest.raises(ValueError, match="rougeLsum"):
        ROUGE("rouge3")
