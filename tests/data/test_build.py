"""The build configs compose, and the fixture build runs end to end, skipping complete stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from blender.cli.build_data import run
from blender.data.build import build_settings_from_dict
from blender.files import read_jsonl_rows

REPO = Path(__file__).resolve().parents[2]


def _compose(overrides: list[str]):  # noqa: ANN202 - DictConfig
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("build_data", overrides=overrides)


def test_paper_config_holds_the_papers_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXINSTRUCT_DOLLY", raising=False)
    cfg = _compose(["data_build=mixinstruct", "data_build.out_dir=/tmp/x"])
    s = build_settings_from_dict(OmegaConf.to_container(cfg.data_build, resolve=True))
    assert s.mix.caps == {"gpt4all": 100000, "dolly": 15000, "alpaca_gpt4": 52000, "sharegpt": 50000}
    assert (s.mix.n_train, s.mix.n_val, s.mix.n_test, s.mix.seed) == (100000, 5000, 5000, 42)
    assert len(s.models) == 11 and len({m.name for m in s.models}) == 11
    g = s.generation
    assert (g.decoding_method, g.top_p, g.temperature, g.max_new_tokens) == ("top_p_sampling", 1.0, 0.7, 256)
    dolly = next(x for x in s.sources if x.name == "dolly")
    assert dolly.path is None and dolly.hub_id == "HuggingFaceH4/databricks_dolly_15k"
    monkeypatch.setenv("MIXINSTRUCT_DOLLY", "/data/databricks-dolly-15k.jsonl")
    cfg = _compose(["data_build=mixinstruct"])
    assert cfg.data_build.sources.dolly.path == "/data/databricks-dolly-15k.jsonl"


def test_fixture_build_runs_then_skips_then_follows_a_changed_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the fixture config's source paths are relative to the repository
    overrides = ["data_build=fixture", f"data_build.out_dir={tmp_path}"]
    status = run(_compose(overrides))
    assert status == {"sources": "ran", "mix": "ran", "generate": "ran", "merge": "ran"}
    card = json.loads((tmp_path / "mix" / "data_card.json").read_text())
    for split in ("train", "val", "test"):
        records = read_jsonl_rows(tmp_path / "mixinstruct" / f"{split}.jsonl")
        assert len(records) == card["splits"][split]["count"] > 0
        assert all([c["model"] for c in r["candidates"]] == ["tiny-llama-chat", "tiny-gpt2"] for r in records)

    assert set(run(_compose(overrides)).values()) == {"skipped"}

    # A different mix changes the splits; the shards of the new records are regenerated.
    status = run(_compose(overrides + ["data_build.mix.n_val=2"]))
    assert status == {"sources": "skipped", "mix": "ran", "generate": "ran", "merge": "ran"}
    assert len(read_jsonl_rows(tmp_path / "mixinstruct" / "val.jsonl")) == 2


def test_unknown_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stages"):
        run(_compose(["data_build=fixture", f"data_build.out_dir={tmp_path}", "stages=[score]"]))
