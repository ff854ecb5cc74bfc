"""The packaged all-mpnet-base-v2 for real: joined from its five packages into the cache (once, ~1 min), a plain
Hugging Face folder with its provenance, and a listwise ranker built on it (backbone=mpnet) scores candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blender.gguf_models import PROVENANCE_FILE
from blender.packaged_models import resolve_name_or_path
from blender.rankers import BackboneSettings, InferenceSettings, build_ranker
from blender.records import parse_record
from tests.conftest import make_raw_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mpnet_resolves_to_a_checked_folder_and_ranks():
    folder = Path(resolve_name_or_path("mpnet"))
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    assert provenance["source"]["sha256"].startswith("eb8d12eec2a0")
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("mpnet", 768, 12)
    assert resolve_name_or_path("mpnet") == str(folder)  # reused
    ranker = build_ranker(
        "listwise",
        {"source_max_length": 32, "candidate_max_length": 32},
        BackboneSettings(name_or_path="mpnet"),
        ["gpt4_pref"],
    )
    (scores,) = ranker.score_records(
        [parse_record(make_raw_record(0, 3), "t")], InferenceSettings(precision="fp32", show_progress=False)
    )
    assert scores.shape == (3,) and np.isfinite(scores).all()
