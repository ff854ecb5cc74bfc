"""BERTScore against a hand computation and a direct bert-score call, on a tiny random BERT (and the real MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path

import bert_score
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from blender.metrics import BERTScore

CANDIDATES = ["the cat sat on the mat", "a dog ran fast", "the answer is good", "bad"]
REFERENCES = ["the cat sat on the mat", "the dog ran slow", "the answer is bad .", "the answer is good"]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "alpaca_blend" / "val.jsonl"


def hand_bertscore_f1(folder: Path, num_layers: int, candidate: str, reference: str) -> float:
    """BERTScore F1 by its definition (Zhang et al., 2020), with bert-score's conventions.

    Each token is the layer-`num_layers` hidden state, L2-normalised. Precision averages, over the candidate's
    words, the best cosine with any reference token; recall the same the other way. [CLS] and [SEP] weigh 0 as
    the side being averaged, but still count as tokens to match against. F1 = 2PR / (P + R).
    """
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()

    def embed(text: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states[num_layers][0]
        is_word = ~torch.isin(ids[0], torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id]))
        return torch.nn.functional.normalize(hidden, dim=-1), is_word

    candidate_emb, candidate_words = embed(candidate)
    reference_emb, reference_words = embed(reference)
    similarity = candidate_emb @ reference_emb.T
    precision = similarity.max(dim=1).values[candidate_words].mean()
    recall = similarity.max(dim=0).values[reference_words].mean()
    return float(2 * precision * recall / (precision + recall))


@pytest.fixture(scope="module")
def tiny_bertscore(tiny_bert_dir: Path) -> BERTScore:
    return BERTScore(
        name_or_path=str(tiny_bert_dir), num_layers=2, batch_size=3, device="cpu", show_progress=False
    )


def test_identical_strings_score_one(tiny_bertscore: BERTScore) -> None:
    assert tiny_bertscore.score(CANDIDATES[:1], REFERENCES[:1]) == pytest.approx([1.0], abs=1e-6)


def test_matches_hand_computation(tiny_bertscore: BERTScore, tiny_bert_dir: Path) -> None:
    expected = [
        hand_bertscore_f1(tiny_bert_dir, 2, c, r) for c, r in zip(CANDIDATES, REFERENCES, strict=True)
    ]
    assert tiny_bertscore.score(CANDIDATES, REFERENCES) == pytest.approx(expected, abs=1e-5)


def test_equals_bert_score_package(tiny_bertscore: BERTScore, tiny_bert_dir: Path) -> None:
    _, _, f1 = bert_score.score(
        CANDIDATES, REFERENCES, model_type=str(tiny_bert_dir), num_layers=2, batch_size=3
    )
    assert tiny_bertscore.score(CANDIDATES, REFERENCES) == f1.tolist()


def test_chunks_do_not_change_scores(tiny_bertscore: BERTScore, tiny_bert_dir: Path) -> None:
    chunked = BERTScore(str(tiny_bert_dir), num_layers=2, chunk_size=1, device="cpu", show_progress=False)
    assert chunked.score(CANDIDATES, REFERENCES) == pytest.approx(
        tiny_bertscore.score(CANDIDATES, REFERENCES), abs=1e-6
    )


def test_unknown_model_needs_num_layers(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValueError, match="metrics.bertscore.num_layers"):
        BERTScore(str(tiny_bert_dir), device="cpu")


def test_misaligned_pairs_fail(tiny_bertscore: BERTScore) -> None:
    with pytest.raises(ValueError, match="2 candidates but 1 references"):
        tiny_bertscore.score(CANDIDATES[:2], REFERENCES[:1])


def test_missing_checkpoint_names_it(hub_offline: None) -> None:
    with pytest.raises(OSError, match=r"'no-such-org/no-such-bert'.*metrics\.bertscore\.name_or_path=DIR"):
        BERTScore("no-such-org/no-such-bert", num_layers=2, device="cpu")


@pytest.mark.slow
@pytest.mark.integration
def test_minilm_equals_bert_score_package() -> None:
    records = [json.loads(line) for line in DATA.read_text().splitlines()[:3]]
    candidates = [candidate["text"] for record in records for candidate in record["candidates"][:4]]
    references = [record["output"] for record in records for _ in range(4)]
    metric = BERTScore("minilm", num_layers=5, device="cpu", show_progress=False)
    _, _, f1 = bert_score.score(
        candidates, references, model_type=metric.model_type, num_layers=5, device="cpu"
    )
    assert metric.score(candidates, references) == f1.tolist()
