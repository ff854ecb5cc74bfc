"""BARTScore against an explicit per-token loop, on a tiny random BART built from config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from blender.metrics import BARTScore

CANDIDATES = ["the cat sat on the mat", "a dog ran", "good", "the answer is bad , the answer is good ."]
REFERENCES = ["the cat sat", "the dog ran fast", "the answer is good", "bad"]


def hand_bartscore(folder: Path, source: str, target: str) -> float:
    """Mean over target tokens t of log p(t | source, earlier target tokens), one token at a time, no padding.

    The target is `<s> words </s>`; the decoder reads `</s> <s> words` (BART's start token, then the
    target shifted right) and must predict every target token, specials included.
    """
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    source_ids = tokenizer(source, return_tensors="pt")["input_ids"]
    target_ids = tokenizer(target)["input_ids"]
    total = 0.0
    for t, token in enumerate(target_ids):
        decoder_ids = torch.tensor([[model.config.decoder_start_token_id, *target_ids[:t]]])
        with torch.no_grad():
            logits = model(input_ids=source_ids, decoder_input_ids=decoder_ids).logits[0, -1]
        total += logits.log_softmax(-1)[token].item()
    return total / len(target_ids)


@pytest.fixture(scope="module")
def tiny_bartscore(tiny_bart_dir: Path) -> BARTScore:
    return BARTScore(str(tiny_bart_dir), batch_size=3, max_length=64, device="cpu", show_progress=False)


def test_matches_per_token_loop(tiny_bartscore: BARTScore, tiny_bart_dir: Path) -> None:
    # The paper's direction: the candidate is the source, the reference the target.
    expected = [hand_bartscore(tiny_bart_dir, c, r) for c, r in zip(CANDIDATES, REFERENCES, strict=True)]
    scores = tiny_bartscore.score(CANDIDATES, REFERENCES)
    assert scores == pytest.approx(expected, rel=1e-5)
    assert all(score < 0 for score in scores)
    assert len(set(round(score, 3) for score in scores)) == len(scores)  # the random model tells them apart


def test_reverse_direction_swaps_source_and_target(tiny_bart_dir: Path) -> None:
    metric = BARTScore(
        str(tiny_bart_dir), direction="reference_to_candidate", device="cpu", show_progress=False
    )
    expected = [hand_bartscore(tiny_bart_dir, r, c) for c, r in zip(CANDIDATES, REFERENCES, strict=True)]
    assert metric.score(CANDIDATES, REFERENCES) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_batch_size_does_not_change_scores(
    tiny_bartscore: BARTScore, tiny_bart_dir: Path, batch_size: int
) -> None:
    metric = BARTScore(str(tiny_bart_dir), batch_size=batch_size, device="cpu", show_progress=False)
    assert metric.score(CANDIDATES, REFERENCES) == pytest.approx(
        tiny_bartscore.score(CANDIDATES, REFERENCES), rel=1e-6
    )


def test_state_dict_path_loads_weights_over_the_checkpoint(tiny_bart_dir: Path, tmp_path: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_bart_dir)
    with torch.no_grad():
        model.model.shared.weight.mul_(0.5)
    torch.save(model.state_dict(), tmp_path / "bart_score.pth")
    plain = BARTScore(str(tiny_bart_dir), device="cpu", show_progress=False)
    loaded = BARTScore(
        str(tiny_bart_dir),
        state_dict_path=str(tmp_path / "bart_score.pth"),
        device="cpu",
        show_progress=False,
    )
    assert torch.equal(loaded.model.model.shared.weight, model.model.shared.weight)
    assert loaded.score(CANDIDATES, REFERENCES) != pytest.approx(
        plain.score(CANDIDATES, REFERENCES), abs=1e-3
    )


def test_unknown_direction_lists_choices(tiny_bart_dir: Path) -> None:
    with pytest.raises(ValueError, match="candidate_to_reference"):
        BARTScore(str(tiny_bart_dir), direction="both", device="cpu")


def test_missing_checkpoint_names_it(hub_offline: None) -> None:
    with pytest.raises(
        OSError, match=r"BARTScore checkpoint 'facebook/bart-large-cnn'.*metrics\.bartscore\.name_or_path=DIR"
    ):
        BARTScore("facebook/bart-large-cnn", device="cpu")
