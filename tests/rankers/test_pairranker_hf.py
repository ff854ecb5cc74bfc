"""PairRanker as a Hugging Face model: config.json + safetensors, AutoConfig / AutoModel, and old folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_model
from transformers import AutoConfig, AutoModel

from blender.api import Blender
from blender.rankers import PairRanker, encode_records, load_ranker, score_pairs
from blender.rankers.pairranker import PairRankerConfig
from blender.rankers.predict import InferenceSettings
from blender.records import parse_record
from tests.conftest import TINY_BUDGETS, make_raw_record, make_tiny_encoder, make_tiny_tokenizer

QUIET = InferenceSettings(show_progress=False, precision="fp32")


def build(**settings) -> PairRanker:
    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer()
    settings = {**TINY_BUDGETS, "pooling": "marker", **settings}
    return PairRanker(make_tiny_encoder(len(tokenizer)), tokenizer, task_names=["a", "b"], **settings).eval()


def all_logits(ranker: PairRanker) -> np.ndarray:
    records = [parse_record(make_raw_record(i), "t") for i in range(3)]
    triples = [(e, i, j) for e in range(3) for i in range(4) for j in range(4) if i != j]
    return score_pairs(ranker, encode_records(ranker, records), triples, QUIET)


@pytest.mark.parametrize("pooling", ["marker", "mean"])
def test_round_trip_through_save_pretrained_and_automodel(tmp_path, pooling):
    ranker = build(pooling=pooling, source_max_length=12, candidate_max_length=10, truncation="head_tail")
    ranker.save_pretrained(tmp_path)
    # Hugging Face's own file names, nothing of blender's.
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert "ranker_config.json" not in files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "blender-pairranker" and config["architectures"] == ["PairRanker"]
    assert config["backbone_config"]["model_type"] == "bert"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), PairRankerConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is PairRanker
    assert loaded.settings() == ranker.settings()
    assert loaded.tokenizer is not None and len(loaded.tokenizer) == len(ranker.tokenizer)
    np.testing.assert_array_equal(all_logits(loaded), all_logits(ranker))
    for key, value in ranker.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_the_loaded_model_is_an_ordinary_pretrained_model(tmp_path):
    ranker = build()
    ranker.save_pretrained(tmp_path)
    loaded = PairRanker.from_pretrained(tmp_path)
    # forward needs no tokenizer: the marker ids are in the config.
    ids = torch.tensor(
        [ranker.encoder.pair_ids(ranker.encoder.encode_record_texts("the", ["good", "bad"]), 0, 1)]
    )
    s1, s2 = loaded(ids, torch.ones_like(ids))
    assert s1.shape == s2.shape == (1, 2)
    assert loaded.config.marker_token_ids == ranker.tokenizer.convert_tokens_to_ids(
        ["<|source|>", "<|candidate1|>", "<|candidate2|>"]
    )
    # A random ranker from the config alone, as AutoModel.from_config builds any model.
    fresh = AutoModel.from_config(loaded.config)
    assert isinstance(fresh, PairRanker) and fresh.head[-1].out_features == 2 and fresh.head[-1].bias is None


def test_a_checkpoint_of_the_earlier_layout_still_loads(tmp_path):
    # What blender wrote before PairRanker was a PreTrainedModel (`PairRanker.save` of main at 0a6df68): the
    # backbone's config.json, the tokenizer, model.safetensors of the module, and ranker_config.json.
    ranker = build(pooling="mean", source_max_length=12, candidate_max_length=10)
    ranker.backbone.config.save_pretrained(tmp_path)
    ranker.tokenizer.save_pretrained(tmp_path)
    save_model(ranker, str(tmp_path / "model.safetensors"))
    settings = {k: v for k, v in ranker.settings().items() if k not in ("input_format", "head_bias")}
    (tmp_path / "ranker_config.json").write_text(json.dumps({"ranker": "pairranker", **settings}, indent=2))
    for loaded in (
        load_ranker(tmp_path),
        PairRanker.load(tmp_path),
        Blender.from_pretrained(tmp_path, device="cpu").ranker,
    ):
        np.testing.assert_array_equal(all_logits(loaded), all_logits(ranker))
        assert loaded.settings() == ranker.settings()


def test_a_wrong_tokenizer_is_refused(tmp_path):
    ranker = build()
    ranker.save_pretrained(tmp_path)
    other = make_tiny_tokenizer()
    other.add_tokens(["extra"])  # the markers now land one id later
    other.add_tokens(["<|source|>", "<|candidate1|>", "<|candidate2|>"], special_tokens=True)
    with pytest.raises(ValueError, match="not this ranker's tokenizer"):
        PairRanker.from_pretrained(tmp_path, tokenizer=other)


def test_push_to_hub_uploads_the_tokenizer_too(tmp_path, monkeypatch):
    # The hub is not reachable here: the commit is captured where transformers hands it to huggingface_hub.
    import transformers.utils.hub as hub

    committed = {}

    class CapturingApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

        def create_commit(self, repo_id, operations, **kwargs):
            committed[repo_id] = sorted(op.path_in_repo for op in operations)

    monkeypatch.setattr(hub, "hf_api", lambda: CapturingApi())
    monkeypatch.setattr(
        hub, "create_and_tag_model_card", lambda *a, **k: type("Card", (), {"save": lambda self, p: None})()
    )
    build().push_to_hub("me/tiny-ranker")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        committed["me/tiny-ranker"]
    )
