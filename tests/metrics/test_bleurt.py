"""The bleurt-pytorch compat import, and BLEURT on a tiny random BleurtConfig model."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
import transformers.pytorch_utils

from blender.metrics import BLEURT
from blender.metrics._bleurt_compat import (
    find_pruneable_heads_and_indices,
    import_bleurt_pytorch,
    load_bleurt_tokenizer,
)

CANDIDATES = ["the cat sat on the mat", "a dog ran fast", "good", "the answer is bad , the answer is good ."]
REFERENCES = ["the cat sat", "the dog ran slow", "the answer is good", "bad"]
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *"the answer is good bad a cat sat on mat dog ran fast slow . ,".split(),
]


@pytest.fixture(scope="module")
def tiny_bleurt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BLEURT (hidden 32) and a WordPiece vocab.txt, the layout of lucadiliello/bleurt-*-128."""
    bleurt_pytorch = import_bleurt_pytorch()
    folder = tmp_path_factory.mktemp("tiny_bleurt")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    config = bleurt_pytorch.BleurtConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = bleurt_pytorch.BleurtForSequenceClassification(config)
    with torch.no_grad():  # a larger head than the 0.02-std init, so scores differ visibly between pairs
        model.classifier.weight.normal_(std=1.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bleurt(tiny_bleurt_dir: Path) -> BLEURT:
    return BLEURT(str(tiny_bleurt_dir), batch_size=3, max_length=64, device="cpu", show_progress=False)


def test_compat_import_works_and_leaves_transformers_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [name for name in sys.modules if name.split(".")[0] == "bleurt_pytorch"]:
        monkeypatch.delitem(sys.modules, module)  # import afresh; monkeypatch puts the old modules back
    had_function = hasattr(transformers.pytorch_utils, "find_pruneable_heads_and_indices")
    had_module = "transformers.models.bert.tokenization_bert_fast" in sys.modules
    if not had_function:  # transformers 5: the plain import is what fails
        with pytest.raises(ImportError, match="find_pruneable_heads_and_indices"):
            importlib.import_module("bleurt_pytorch")
        for module in [name for name in sys.modules if name.split(".")[0] == "bleurt_pytorch"]:
            del sys.modules[module]
    bleurt_pytorch = import_bleurt_pytorch()
    assert bleurt_pytorch.BleurtForSequenceClassification.__name__ == "BleurtForSequenceClassification"
    assert import_bleurt_pytorch() is bleurt_pytorch
    assert hasattr(transformers.pytorch_utils, "find_pruneable_heads_and_indices") == had_function
    assert ("transformers.models.bert.tokenization_bert_fast" in sys.modules) == had_module


def test_find_pruneable_heads_and_indices() -> None:
    # 4 heads of size 2: pruning head 1 keeps the weights of heads 0, 2 and 3.
    heads, index = find_pruneable_heads_and_indices([1], n_heads=4, head_size=2, already_pruned_heads=set())
    assert heads == {1}
    assert index.tolist() == [0, 1, 4, 5, 6, 7]
    # Head 0 already gone, 3 remain: original head 2 now sits in slot 1; head 0 is not pruned twice.
    heads, index = find_pruneable_heads_and_indices([0, 2], n_heads=3, head_size=2, already_pruned_heads={0})
    assert heads == {2}
    assert index.tolist() == [0, 1, 4, 5]


def test_attention_heads_can_be_pruned(tiny_bleurt_dir: Path) -> None:
    model = import_bleurt_pytorch().BleurtForSequenceClassification.from_pretrained(tiny_bleurt_dir)
    attention = model.bleurt.encoder.layer[0].attention
    attention.prune_heads([1])
    assert attention.self.num_attention_heads == 1
    assert attention.self.query.out_features == 16


def test_matches_one_pair_at_a_time(tiny_bleurt: BLEURT, tiny_bleurt_dir: Path) -> None:
    bleurt_pytorch = import_bleurt_pytorch()
    tokenizer = bleurt_pytorch.BleurtTokenizer.from_pretrained(tiny_bleurt_dir)
    model = bleurt_pytorch.BleurtForSequenceClassification.from_pretrained(tiny_bleurt_dir).eval()
    expected = []
    for candidate, reference in zip(CANDIDATES, REFERENCES, strict=True):
        # [CLS] reference [SEP] candidate [SEP], segment ids 0 then 1, no padding.
        inputs = tokenizer(reference, candidate, return_tensors="pt")
        assert inputs["token_type_ids"][0].tolist() == [0] * (len(reference.split()) + 2) + [1] * (
            len(candidate.split()) + 1
        )
        with torch.no_grad():
            expected.append(model(**inputs).logits.item())
    scores = tiny_bleurt.score(CANDIDATES, REFERENCES)
    assert len(scores) == len(CANDIDATES)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(round(score, 3) for score in scores)) == len(scores)


def test_deterministic_and_batch_invariant(tiny_bleurt: BLEURT, tiny_bleurt_dir: Path) -> None:
    first = tiny_bleurt.score(CANDIDATES, REFERENCES)
    assert tiny_bleurt.score(CANDIDATES, REFERENCES) == first
    one_by_one = BLEURT(str(tiny_bleurt_dir), batch_size=1, max_length=64, device="cpu", show_progress=False)
    assert one_by_one.score(CANDIDATES, REFERENCES) == pytest.approx(first, abs=1e-5)


def test_sentencepiece_checkpoint_gets_the_sentencepiece_tokenizer(tmp_path: Path) -> None:
    """A folder with `spm.model` and no `vocab.txt` (the BLEURT-20 layout) loads BleurtSPTokenizer."""
    # Both come with the `bleurt` extra that `make setup` installs; transformers 5 needs protobuf to read spm.model.
    import google.protobuf  # noqa: F401
    import sentencepiece

    (tmp_path / "corpus.txt").write_text("\n".join(CANDIDATES + REFERENCES) * 20)
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp_path / "corpus.txt"),
        model_prefix=str(tmp_path / "spm"),
        vocab_size=30,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]", "[PAD]"],
        minloglevel=2,
    )
    tokenizer = load_bleurt_tokenizer(str(tmp_path))
    assert type(tokenizer).__name__ == "BleurtSPTokenizer"
    assert len(tokenizer) > 10
    assert tokenizer("the cat", "a dog")["token_type_ids"].count(1) > 0


def test_missing_checkpoint_names_it(hub_offline: None) -> None:
    with pytest.raises(
        OSError, match=r"BLEURT checkpoint 'lucadiliello/bleurt-base-128'.*metrics\.bleurt\.checkpoint=DIR"
    ):
        BLEURT("lucadiliello/bleurt-base-128", device="cpu")
