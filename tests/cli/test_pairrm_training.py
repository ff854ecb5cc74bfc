"""Training from a checkpoint (`ranker.init_from`: PairRM or a blender run) and on preference pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel

from blender.cli import train_ranker
from blender.rankers import PairRanker, load_ranker
from tests.conftest import REPO, SHARED, compose_config

PREFERENCE = REPO / "tests" / "fixtures" / "preference"
PAIRRM = SHARED / "fixtures" / "pairrm_tiny" / "pairrm"


def preference_run(tmp_path, *extra):
    return compose_config(
        "train_ranker",
        [
            "experiment=smoke",
            "ranker=pairranker",
            "data=preference",
            f"data.path={PREFERENCE}",
            "trainer.best_metric=val/pairwise_accuracy",
            "data.limit_val=8",
            f"output_dir={tmp_path / 'run'}",
            *extra,
        ],
    )


def test_a_preference_file_trains_and_reports_pairwise_accuracy(tmp_path, one_thread):
    summary = train_ranker.run(preference_run(tmp_path))
    assert summary["global_step"] == 2 and np.isfinite(summary["train/loss"])
    (epoch,) = summary["history"]
    accuracy = epoch["val/pairwise_accuracy"]
    assert accuracy in {k / 8 for k in range(9)} and epoch["val/top1_oracle"] == accuracy
    # The best checkpoint evaluated on the eval split: pairwise accuracy beside Longest, with intervals.
    report = summary["eval"]
    assert report["pairwise_accuracy"] == accuracy and report["n_pairs"] == 8
    low, high = report["interval"]
    assert low <= accuracy <= high
    saved = json.loads((tmp_path / "run" / "eval" / "pairwise_preference_val.json").read_text())
    assert saved["pairwise_accuracy"] == accuracy
    assert "| Longest |" in (tmp_path / "run" / "eval" / "pairwise_preference_val.md").read_text()


@pytest.mark.skipif(not PAIRRM.is_dir(), reason="needs ../shared/fixtures/pairrm_tiny")
def test_init_from_fine_tunes_pairrm_and_its_parameters_move(tmp_path, one_thread):
    start = load_ranker(PAIRRM)
    summary = train_ranker.run(
        preference_run(
            tmp_path,
            f"ranker.init_from={PAIRRM}",
            "trainer.max_steps=3",
            "trainer.batch_size=2",
            "evaluate_after_training=false",
        )
    )
    assert summary["global_step"] == 3  # a fresh run from step 0, not a resumed one
    tuned = AutoModel.from_pretrained(tmp_path / "run" / "best")
    # The checkpoint's own input building and head come along; the tasks take the data's signal names.
    assert isinstance(tuned, PairRanker) and tuned.input_format == "pairrm" and tuned.head[4].bias is not None
    assert tuned.task_names == ["preference"] and tuned.encoder.source_max_length == 1224
    before, after = start.state_dict(), tuned.state_dict()
    assert before.keys() == after.keys()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    # Every weight moves (AdamW's decay reaches even embedding rows no batch used) but the last Linear's
    # bias, which cancels in s1 − s2 and so gets no gradient.
    assert set(before) - set(moved) == {"head.4.bias"}


def test_init_from_a_blender_run_and_checks_the_kind_and_tasks(tmp_path, one_thread):
    first = train_ranker.run(preference_run(tmp_path / "a", "evaluate_after_training=false"))
    assert first["global_step"] == 2
    best = tmp_path / "a" / "run" / "best"
    again = train_ranker.run(
        preference_run(tmp_path / "b", f"ranker.init_from={best}", "evaluate_after_training=false")
    )
    assert again["global_step"] == 2
    with pytest.raises(ValueError, match=r"has 1 task\(s\) \['preference'\], data.signals has 2"):
        train_ranker.run(
            preference_run(tmp_path / "c", f"ranker.init_from={best}", "data.signals=[preference,other]")
        )
    with pytest.raises(ValueError, match="holds a PairRanker, but ranker=summareranker"):
        train_ranker.run(
            preference_run(
                tmp_path / "d",
                "ranker=summareranker",
                f"ranker.init_from={best}",
                "ranker.source_max_length=32",
                "ranker.candidate_max_length=32",
            )
        )
