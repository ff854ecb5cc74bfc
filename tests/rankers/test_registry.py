"""A new ranker kind is one module and one config file: a toy kind defined here trains and evaluates through the
entry points, found by its import path, with no edit anywhere in blender."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from blender.cli import evaluate, train_ranker
from blender.rankers.checkpoint import RANKER_CONFIG_FILE, read_ranker_config
from blender.rankers.registry import RANKERS, RankerKind, TrainingPlan, get_kind, load_ranker
from blender.rankers.saved_scores import load_candidate_scores
from blender.records import Record, signal_matrix
from tests.conftest import compose_config

KIND_PATH = "tests.rankers.test_registry:LENGTH_KIND"


def log_words(text: str) -> float:
    return float(np.log1p(len(text.split())))


class LengthRanker(nn.Module):
    """Scores a candidate by weight × log(1 + its word count): one trainable number."""

    label = "LengthRanker"

    def __init__(self, initial_weight: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([initial_weight]))

    def forward(self, features: Tensor) -> Tensor:
        return self.weight * features

    def score_records(self, records: Sequence[Record], settings: Any) -> list[np.ndarray]:
        with torch.no_grad():
            return [
                self(torch.tensor([log_words(c.text) for c in r.candidates])).double().numpy()
                for r in records
            ]

    def forward_passes(self, record: Record) -> int:
        return len(record.candidates)

    def save(self, directory: str | os.PathLike) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        settings = {"ranker": KIND_PATH, "initial_weight": self.weight.item()}
        (Path(directory) / RANKER_CONFIG_FILE).write_text(json.dumps(settings))

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> LengthRanker:
        return cls(read_ranker_config(directory)["initial_weight"])


@dataclass
class LengthSampling:
    margin: float = 1.0


def prepare_length_training(
    ranker: LengthRanker,
    records: Sequence[Record],
    signals: Sequence[str],
    sampling: LengthSampling,
    batch_size: int,
    seed: int,
) -> TrainingPlan:
    # Every candidate is an example: its feature and its signal centred within its instruction.
    features, targets = [], []
    for record in records:
        signal = signal_matrix(record, signals)[:, 0]
        features += [log_words(c.text) for c in record.candidates]
        targets += (signal - signal.mean()).tolist()
    x, y = torch.tensor(features), torch.tensor(targets)
    batches = [
        {"features": x[k : k + batch_size], "targets": y[k : k + batch_size]}
        for k in range(0, len(x), batch_size)
    ]

    def loss(model: LengthRanker, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return ((model(batch["features"]) - sampling.margin * batch["targets"]) ** 2).mean(), {}

    return TrainingPlan(lambda epoch: batches, loss, f"{len(x)} candidates")


LENGTH_KIND = RankerKind(
    name=KIND_PATH,
    model=LengthRanker,
    build=lambda settings, backbone, task_names: LengthRanker(**settings),
    pairwise=False,
    sampling=LengthSampling,
    prepare_training=prepare_length_training,
)


@pytest.fixture
def toy_conf(tmp_path, monkeypatch) -> Path:
    """The one config file of the new kind, in a config folder of its own."""
    conf = tmp_path / "conf" / "ranker"
    conf.mkdir(parents=True)
    (conf / "length.yaml").write_text(f"kind: {KIND_PATH}\ninitial_weight: 0.0\nsampling:\n  margin: 1.0\n")
    monkeypatch.delitem(RANKERS, KIND_PATH, raising=False)
    return tmp_path / "conf"


def test_a_new_kind_trains_and_evaluates_through_the_entry_points(tmp_path, toy_conf, small_dataset):
    cfg = compose_config(
        "train_ranker",
        [
            f"hydra.searchpath=[file://{toy_conf}]",
            "ranker=length",
            f"data.path={small_dataset}",
            f"output_dir={tmp_path / 'run'}",
            "trainer.epochs=3",
            "trainer.lr=0.5",
            "trainer.batch_size=8",
            "trainer.mixed_precision=no",
            "trainer.show_progress=false",
            "inference.show_progress=false",
            "eval.bootstrap_samples=50",
        ],
    )
    summary = train_ranker.run(cfg)
    # 12 records × 4 candidates in batches of 8, three epochs; longer answers are better in this data, so the
    # one weight learns to be positive and the pick is the longest answer, the best in every val record.
    assert summary["global_step"] == 18
    trained = load_ranker(tmp_path / "run" / "best")
    assert isinstance(trained, LengthRanker) and trained.weight.item() > 0
    row = {r["method"]: r for r in summary["eval"]["rows"]}["LengthRanker"]
    assert row["forward_passes"] == 4 and row["top1_oracle"] == pytest.approx(0.8)
    assert get_kind(KIND_PATH) is LENGTH_KIND

    eval_cfg = compose_config(
        "eval",
        [
            f"checkpoint={tmp_path / 'run' / 'best'}",
            f"data.path={small_dataset}",
            f"output_dir={tmp_path / 'eval'}",
            "inference.show_progress=false",
            "eval.bootstrap_samples=50",
        ],
    )
    table = evaluate.run(eval_cfg)
    assert table["ranker"] == KIND_PATH
    assert {r["method"]: r for r in table["rows"]}["LengthRanker"]["top1_oracle"] == pytest.approx(0.8)
    ids, _, scores = load_candidate_scores(tmp_path / "eval" / "candidate_scores_alpaca_blend_modern_val.npz")
    assert len(ids) == 6 and [len(s) for s in scores] == [4] * 6


def test_an_unknown_kind_names_the_choices():
    with pytest.raises(
        ValueError, match=r"ranker kind 'pairrank' is not one of \['listwise', 'mlm_scoring', 'pairranker'"
    ):
        get_kind("pairrank")
    with pytest.raises(ValueError, match="cannot import it"):
        get_kind("no_such_module:KIND")
