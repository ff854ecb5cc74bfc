import json

import numpy as np
import pytest
import torch

from blender.rankers import SimCLS, SummaReranker, load_ranker
from blender.rankers.simcls import SimCLSSampling, ordering_signal
from blender.rankers.summareranker import SummaRerankerSampling, top_bottom
from blender.training.loop import TrainSettings
from blender.training.rankers import train_ranker
from tests.conftest import make_tiny_encoder, make_tiny_tokenizer
from tests.training.test_loop import records
from tests.training.test_loop import settings as loop_settings


def settings(**overrides) -> TrainSettings:
    return loop_settings(**{"save_every_steps": 100, **overrides})


def test_top_bottom_hand_worked_example():
    chosen, labels = top_bottom(np.array([[0.2], [0.9], [0.5], [0.1]]), 1, 1)
    assert chosen == [1, 3] and labels.tolist() == [[1.0], [0.0]]


def test_top_bottom_orders_by_mean_rank_and_labels_each_task():
    # Task 0 (scale 0-1) prefers candidate 0, task 1 (scale 0-100) candidate 1; mean ranks: 0 → 2.5, 1 → 2.5,
    # 2 → 1. Stable order keeps candidate 0 first, candidate 2 is the bottom.
    signal = np.array([[0.9, 50.0], [0.5, 90.0], [0.1, 10.0]])
    chosen, labels = top_bottom(signal, 1, 1)
    assert chosen == [0, 2] and labels.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    # min_delta per task: 0.5 is within 0.4 of 0.9 on task 0.
    _, labels = top_bottom(signal, 2, 0, (0.4, 0.0))
    assert labels.tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_ordering_signal_for_one_and_several_tasks():
    order, delta = ordering_signal(np.array([[0.3], [0.8]]), (0.1,))
    assert order.tolist() == [0.3, 0.8] and delta == 0.1
    order, delta = ordering_signal(np.array([[0.3, 5.0], [0.8, 1.0], [0.1, 0.0]]), (0.1, 0.0))
    assert order.tolist() == [2.5, 2.5, 1.0] and delta == 0.0  # ranks [2, 3, 1] and [3, 2, 1]


def summareranker() -> SummaReranker:
    tokenizer = make_tiny_tokenizer()
    return SummaReranker(
        make_tiny_encoder(len(tokenizer)),
        tokenizer,
        task_names=["gpt4_pref", "other"],
        dropout=0.1,
        source_max_length=12,
        candidate_max_length=10,
    )


def simcls() -> SimCLS:
    tokenizer = make_tiny_tokenizer()
    return SimCLS(
        make_tiny_encoder(len(tokenizer)),
        tokenizer,
        task_names=["gpt4_pref"],
        source_max_length=12,
        candidate_max_length=10,
    )


@pytest.mark.parametrize(
    ("build", "signals", "sampling"),
    [
        (
            summareranker,
            ["gpt4_pref", "other"],
            SummaRerankerSampling(min_delta={"gpt4_pref": 0.1, "default": 0.0}),
        ),
        (simcls, ["gpt4_pref"], SimCLSSampling(margin=0.05)),
    ],
    ids=["summareranker", "simcls"],
)
def test_training_moves_the_used_parameters_and_keeps_the_best(build, signals, sampling, tmp_path):
    ranker = build()
    before = {n: p.detach().clone() for n, p in ranker.named_parameters()}
    summary = train_ranker(
        ranker, records(12), records(4, 100), signals, "gpt4_pref", "m3", sampling, settings(), tmp_path
    )
    assert np.isfinite(summary["train/loss"]) and len(summary["history"]) == 2
    # Embedding rows of tokens the data never holds get no gradient; everything else must move.
    unchanged = [
        n
        for n, p in ranker.named_parameters()
        if p.requires_grad and torch.equal(p, before[n]) and "word_embeddings" not in n
    ]
    assert unchanged == []
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val/top1_oracle" in row and "val/spearman_within" in row for row in logged)
    assert type(load_ranker(tmp_path / "best")) is type(ranker)


def test_summareranker_learns_the_top_candidate(tmp_path):
    # The longest candidate is the best of every record; training on top/bottom finds it on val.
    tokenizer = make_tiny_tokenizer()
    ranker = SummaReranker(
        make_tiny_encoder(len(tokenizer)),
        tokenizer,
        task_names=["gpt4_pref"],
        dropout=0.0,
        source_max_length=12,
        candidate_max_length=10,
    )
    summary = train_ranker(
        ranker,
        records(24),
        records(6, 100),
        ["gpt4_pref"],
        "gpt4_pref",
        "m3",
        SummaRerankerSampling(),
        settings(epochs=8),
        tmp_path,
    )
    assert summary["best_value"] == pytest.approx(0.8)


def test_a_ranker_with_the_wrong_sampling_is_refused(tmp_path):
    with pytest.raises(TypeError, match="SummaRerankerSampling"):
        train_ranker(
            summareranker(),
            records(2),
            [],
            ["gpt4_pref"],
            "gpt4_pref",
            "m3",
            SimCLSSampling(),
            settings(),
            tmp_path,
        )
