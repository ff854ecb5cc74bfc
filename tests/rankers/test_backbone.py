"""ranker.attention_dropout reaches the encoder's config (BERT's field or a decoder's), from a config dict, from saved
weights and through a ranker's builder, and a value the encoder cannot take ends in one error naming the option;
saved weights load in float32 whatever dtype they were stored in."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from blender.packaged_models import looks_like_path, resolve_name_or_path
from blender.rankers.backbone import BackboneSettings, build_backbone, encoder_ranker_builder
from blender.rankers.listwise import ListwiseRanker
from tests.conftest import make_tiny_tokenizer

TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}


@pytest.fixture
def tokenizer_dir(tmp_path):
    make_tiny_tokenizer().save_pretrained(tmp_path / "tokenizer")
    return str(tmp_path / "tokenizer")


def test_attention_dropout_is_set_on_a_random_encoder(tokenizer_dir):
    kept, _ = build_backbone(config=TINY_BERT, tokenizer=tokenizer_dir)
    zeroed, _ = build_backbone(config=TINY_BERT, tokenizer=tokenizer_dir, attention_dropout=0.0)
    assert kept.config.attention_probs_dropout_prob == 0.1  # BERT's own default, untouched
    assert zeroed.config.attention_probs_dropout_prob == 0.0
    assert zeroed.config.hidden_dropout_prob == 0.1  # only the attention dropout changes


def test_attention_dropout_is_set_on_saved_weights(tmp_path, tokenizer_dir):
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, attention_probs_dropout_prob=0.2)  # fmt: skip
    BertModel(config).save_pretrained(tmp_path / "weights")
    kept, _ = build_backbone(str(tmp_path / "weights"), tokenizer=tokenizer_dir)
    zeroed, _ = build_backbone(str(tmp_path / "weights"), tokenizer=tokenizer_dir, attention_dropout=0.0)
    assert kept.config.attention_probs_dropout_prob == 0.2
    assert zeroed.config.attention_probs_dropout_prob == 0.0


def test_a_ranker_built_from_settings_gets_the_dropout(tokenizer_dir):
    build = encoder_ranker_builder(ListwiseRanker)
    backbone = BackboneSettings(name_or_path=None, config=TINY_BERT, tokenizer=tokenizer_dir)
    settings = {"source_max_length": 12, "candidate_max_length": 10, "attention_dropout": 0.0}
    ranker = build(settings, backbone, ["q"])
    assert ranker.backbone.config.attention_probs_dropout_prob == 0.0
    assert "attention_dropout" in settings  # the caller's settings are left as they were
    kept = build({**settings, "attention_dropout": None}, backbone, ["q"])
    assert kept.backbone.config.attention_probs_dropout_prob == 0.1


@pytest.mark.parametrize(
    ("config", "value", "message"),
    [
        (TINY_BERT, 1.0, r"ranker.attention_dropout=1.0: give a probability in \[0, 1\)"),
        (TINY_BERT, -0.1, r"ranker.attention_dropout=-0.1: give a probability"),
        (TINY_BERT, "abc", r"ranker.attention_dropout='abc': give a probability in \[0, 1\) or null"),
        (
            {"model_type": "t5", "d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32, "d_kv": 8},
            0.0,
            "a t5 encoder has none of attention_probs_dropout_prob, attention_dropout to set; leave it null",
        ),
    ],
)
def test_a_dropout_the_encoder_cannot_take_is_one_error(tokenizer_dir, config, value, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(config=config, tokenizer=tokenizer_dir, attention_dropout=value)


def test_a_bad_dropout_on_saved_weights_is_not_called_a_loading_error(tmp_path, tokenizer_dir):
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(tmp_path / "weights")
    with pytest.raises(ValueError, match=r"^ranker.attention_dropout=2.0: give a probability in \[0, 1\)$"):
        build_backbone(str(tmp_path / "weights"), tokenizer=tokenizer_dir, attention_dropout=2.0)


@pytest.mark.parametrize(
    ("config", "default"),
    [
        ({"model_type": "distilbert", "dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32}, 0.1),
        (
            {
                "model_type": "gemma3_text",
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 8,
                "attention_dropout": 0.2,
            },
            0.2,
        ),  # fmt: skip
    ],
    ids=["distilbert", "gemma3"],
)
def test_a_config_without_berts_field_gets_its_own_attention_dropout_set(tokenizer_dir, config, default):
    kept, _ = build_backbone(config=config, tokenizer=tokenizer_dir)
    zeroed, _ = build_backbone(config=config, tokenizer=tokenizer_dir, attention_dropout=0.0)
    assert kept.config.attention_dropout == default
    assert zeroed.config.attention_dropout == 0.0
    assert not hasattr(zeroed.config, "attention_probs_dropout_prob")


def test_weights_saved_in_bf16_are_built_in_float32(tmp_path, tokenizer_dir):
    # A bf16 checkpoint (the packaged Gemma) kept in bf16 would lose AdamW's small updates to rounding.
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    stored = BertModel(config).to(torch.bfloat16)
    stored.save_pretrained(tmp_path / "weights")
    model, _ = build_backbone(str(tmp_path / "weights"), tokenizer=tokenizer_dir)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    torch.testing.assert_close(
        model.embeddings.word_embeddings.weight, stored.embeddings.word_embeddings.weight.float()
    )


@pytest.mark.parametrize(
    "name", ["{tmp}/no/such/folder", "./no-such-folder", "outputs/train_ranker/missing/best"]
)
def test_a_missing_local_folder_is_named_as_such_not_sent_to_the_hub(tmp_path, name):
    name = name.format(tmp=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such folder") as raised:
        build_backbone(name)
    assert repr(name) in str(raised.value)  # not the hub's "Repo id must be in the form ..."


def test_hub_ids_and_short_names_are_not_taken_for_paths(tmp_path):
    assert not looks_like_path("microsoft/deberta-v3-large")
    assert not looks_like_path("minilm")
    assert looks_like_path("~/models/ranker") and looks_like_path("../shared/x")
    folder = tmp_path / "saved"
    folder.mkdir()
    assert resolve_name_or_path(str(folder)) == str(folder)  # an existing folder passes through
