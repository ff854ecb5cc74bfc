"""`conf/metrics/*.yaml` compose and instantiate; `metrics=paper` fails here naming each checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from blender.metrics import BLEU, ROUGE, BERTScore, MetricLoadError, ReferenceMetric, build_metrics

CONF = Path(__file__).resolve().parents[2] / "conf"
PAPER_CHECKPOINTS = {
    "bertscore": ("bert-base-multilingual-cased", "metrics.bertscore.name_or_path"),
    "bleurt": ("lucadiliello/bleurt-base-128", "metrics.bleurt.checkpoint"),
    "bartscore": ("facebook/bart-large-cnn", "metrics.bartscore.name_or_path"),
}


@pytest.fixture
def compose_metrics() -> Iterator:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda overrides: compose(config_name=None, overrides=overrides)
    GlobalHydra.instance().clear()


def test_offline_set_composes_and_instantiates_on_a_tiny_model(compose_metrics, tiny_bert_dir: Path) -> None:
    cfg: DictConfig = compose_metrics(
        [
            "+metrics=offline",
            f"metrics.bertscore.name_or_path={tiny_bert_dir}",
            "metrics.bertscore.num_layers=2",
        ]
    )
    metrics = build_metrics(cfg.metrics)
    assert list(metrics) == ["bertscore", "bleu", "rouge1", "rouge2", "rougeL"]
    assert isinstance(metrics["bertscore"], BERTScore) and metrics["bertscore"].num_layers == 2
    assert isinstance(metrics["bleu"], BLEU) and isinstance(metrics["rougeL"], ROUGE)
    for name, metric in metrics.items():
        assert isinstance(metric, ReferenceMetric) and metric.name == name
        metric.show_progress = False
        assert metric.score(["the cat sat"], ["the cat sat"]) == pytest.approx(
            [100.0 if name == "bleu" else 1.0]
        )


def test_one_metric_drops_with_a_tilde(compose_metrics, tiny_bert_dir: Path) -> None:
    cfg = compose_metrics(["+metrics=offline", "~metrics.bertscore", "~metrics.rouge2"])
    assert list(build_metrics(cfg.metrics)) == ["bleu", "rouge1", "rougeL"]


def test_paper_set_composes(compose_metrics) -> None:
    cfg = compose_metrics(["+metrics=paper"])
    assert list(cfg.metrics) == ["bertscore", "bleurt", "bartscore"]
    assert cfg.metrics.bertscore.num_layers == 9
    assert cfg.metrics.bartscore.direction == "candidate_to_reference"
    for name, (checkpoint, key) in PAPER_CHECKPOINTS.items():
        assert OmegaConf.select(cfg, key) == checkpoint, name


@pytest.mark.parametrize("name", list(PAPER_CHECKPOINTS))
def test_paper_set_fails_naming_each_checkpoint(compose_metrics, hub_offline: None, name: str) -> None:
    others = [f"~metrics.{other}" for other in PAPER_CHECKPOINTS if other != name]
    cfg = compose_metrics(["+metrics=paper", *others])
    checkpoint, key = PAPER_CHECKPOINTS[name]
    with pytest.raises(MetricLoadError) as failure:
        build_metrics(cfg.metrics)
    message = str(failure.value)
    assert repr(checkpoint) in message
    assert f"huggingface-cli download {checkpoint}" in message
    assert f"{key}=DIR" in message


@pytest.mark.integration
def test_offline_set_instantiates_with_the_packaged_minilm(compose_metrics) -> None:
    cfg = compose_metrics(["+metrics=offline", "metrics.bertscore.device=cpu"])
    metric = build_metrics(cfg.metrics)["bertscore"]
    assert Path(metric.model_type, "config.json").is_file()
    assert metric.num_layers == 5
