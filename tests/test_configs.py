"""Every config composes, and the pieces it names can be built (torchtune's test_configs.py)."""

from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from blender.cli.common import to_dict
from blender.cli.train_ranker import ranker_job
from blender.fuser import FinetuneSettings, GenerationSettings, GenFuser, PackingSettings, TopKSettings
from blender.fuser.model import KINDS
from blender.rankers import ListwiseRanker, build_ranker
from blender.rankers.registry import get_kind
from blender.training.loop import LoggerSettings, TrainSettings
from tests.conftest import CONF, compose_config

DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("backbone", sorted(p.stem for p in (CONF / "backbone").glob("*.yaml")))
def test_train_ranker_composes(data, backbone, tmp_path):
    cfg = compose_config("train_ranker", [f"data={data}", f"backbone={backbone}", f"output_dir={tmp_path}"])
    assert cfg.data.name == data and list(cfg.data.signals)
    TrainSettings(**to_dict(cfg.trainer))
    get_kind(cfg.ranker.kind).sampling(**to_dict(cfg.ranker)["sampling"])
    LoggerSettings(**to_dict(cfg.logger))


def entry_point_of(experiment: str) -> str:
    """The config an experiment belongs to, read off the command on its second line."""
    command = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()[1]
    return "train_fuser" if ("train-fuser" in command or "train_fuser" in command) else "train_ranker"


def leaves(values: dict, prefix: str = "") -> dict[str, object]:
    """A nested dict as {"a.b.c": value}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose_and_start_with_their_command(experiment, tmp_path):
    cfg = compose_config(entry_point_of(experiment), [f"experiment={experiment}", f"output_dir={tmp_path}"])
    # Every value the experiment sets itself is what the composed config holds (none lost to a defaults order).
    own = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text()) or {}
    own.pop("defaults", None)
    composed = OmegaConf.to_container(cfg, resolve=False)
    for key, value in leaves(own).items():
        assert OmegaConf.select(OmegaConf.create(composed), key) == value, key
    lines = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[1].startswith(("# python -m blender.", "# make "))


def test_smoke_experiment_builds_a_ranker(tmp_path):
    cfg = compose_config("train_ranker", ["experiment=smoke", f"output_dir={tmp_path}"])
    job = ranker_job(cfg)
    ranker = build_ranker(job.ranker.kind, job.ranker.model, job.backbone, job.data.signals)
    assert isinstance(ranker, ListwiseRanker) and ranker.encoder.source_max_length == 32


@pytest.mark.parametrize("fuser", sorted(p.stem for p in (CONF / "fuser").glob("*.yaml")))
def test_train_fuser_composes(fuser, tmp_path):
    cfg = compose_config("train_fuser", [f"fuser={fuser}", f"output_dir={tmp_path}"])
    TrainSettings(**to_dict(cfg.trainer))
    TopKSettings(**to_dict(cfg.topk))
    fuser_cfg = to_dict(cfg.fuser)
    assert fuser_cfg["kind"] in KINDS and fuser_cfg["_target_"] == "blender.fuser.build_fuser"
    PackingSettings(**fuser_cfg["packing"])
    GenerationSettings(**fuser_cfg["generation"])
    FinetuneSettings(**fuser_cfg.get("finetuning") or {})


def test_tiny_fuser_builds(tmp_path):
    cfg = compose_config("train_fuser", ["experiment=fuser_smoke", f"output_dir={tmp_path}"])
    fuser = instantiate(cfg.fuser, _convert_="all")
    assert isinstance(fuser, GenFuser) and fuser.packing.max_source_length == 96


def test_data_paths_follow_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("ALPACA_BLEND_DIR", str(tmp_path))
    cfg = compose_config("train_ranker", ["data=alpaca_blend", f"output_dir={tmp_path}"])
    assert cfg.data.path == str(tmp_path)
    monkeypatch.delenv("MIXINSTRUCT_DIR", raising=False)
    cfg = compose_config("train_ranker", ["data=mixinstruct", f"output_dir={tmp_path}"])
    assert cfg.data.path is None and cfg.data.hub_id == "llm-blender/mix-instruct"


def test_eval_config_composes(tmp_path):
    cfg = compose_config("eval", [f"checkpoint={tmp_path}", "data=alpaca_blend"])
    assert cfg.split == "val" and "max_logits" in cfg.eval.aggregations
    assert compose_config("eval", [f"checkpoint={tmp_path}", "data=mixinstruct"]).split == "test"
    cfg = compose_config("eval", [f"checkpoint={tmp_path}", f"fuser_checkpoint={tmp_path}", "judge=local"])
    assert cfg.fuse.k == 3 and "bertscore" in cfg.metrics and cfg.judge.model


def test_unknown_config_key_fails_clearly(tmp_path):
    with pytest.raises(Exception, match="trainer.learning_rat"):
        compose_config("train_ranker", ["trainer.learning_rat=1e-3", f"output_dir={tmp_path}"])


@pytest.mark.parametrize("path", sorted((CONF / "accelerate").glob("*.yaml")), ids=lambda p: p.stem)
def test_accelerate_configs_parse(path: Path):
    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] in {"NO", "MULTI_GPU", "DEEPSPEED"}
    if config["distributed_type"] == "DEEPSPEED":
        assert config["deepspeed_config"]["zero_stage"] in (2, 3)


def test_settings_defaults_are_the_offline_default_fusers():
    # The dataclasses document their defaults as conf/fuser/gemma3_270m.yaml's: a fuser built without a config
    # (Blender.fuse, a script) must pack and decode as `make train-fuser` does.
    fuser_cfg = yaml.safe_load((CONF / "fuser" / "gemma3_270m.yaml").read_text())
    assert PackingSettings(**fuser_cfg["packing"]) == PackingSettings()
    assert GenerationSettings(**fuser_cfg["generation"]) == GenerationSettings()
