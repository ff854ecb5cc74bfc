"""Saved scores round-trip without pickles, and a crafted pickle in a run folder never runs."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from blender.cli import evaluate
from blender.rankers.saved_scores import (
    SavedScoresError,
    load_candidate_scores,
    load_pair_logits,
    read_pair_logits,
    write_candidate_scores,
    write_pair_logits,
)
from blender.records import parse_record
from tests.conftest import (
    TINY_BUDGETS,
    compose_config,
    make_raw_record,
    make_tiny_encoder,
    make_tiny_tokenizer,
)


def test_ragged_matrices_and_scores_round_trip(tmp_path):
    matrices = [np.arange(9.0).reshape(3, 3), np.arange(4.0).reshape(2, 2) * -1.5]
    write_pair_logits(tmp_path / "l.npz", ["a", "b"], [["x", "y", "z"], ["x", "y"]], matrices, 0.25, "bf16")
    saved = load_pair_logits(tmp_path / "l.npz")
    assert saved.ids == ["a", "b"] and saved.models == [["x", "y", "z"], ["x", "y"]]
    assert saved.seconds_per_instruction == 0.25 and saved.precision == "bf16"
    for got, want in zip(saved.matrices, matrices, strict=True):
        np.testing.assert_array_equal(got, want)
    write_candidate_scores(
        tmp_path / "s.npz", ["a", "b"], [["x", "y", "z"], ["x"]], [np.array([1.0, 2, 3]), np.array([4.0])]
    )
    ids, models, scores = load_candidate_scores(tmp_path / "s.npz")
    assert ids == ["a", "b"] and models[1] == ["x"] and scores[0].tolist() == [1.0, 2.0, 3.0]
    # Nothing in the files needs a pickle to read.
    with np.load(tmp_path / "l.npz", allow_pickle=False) as raw:
        assert all(raw[name].dtype != object for name in raw.files)


class Payload:
    """Unpickling this writes a marker file: what a hostile npz would do instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path, marker, ids, models) -> None:
    hostile = np.empty(1, dtype=object)
    hostile[0] = Payload(str(marker))
    np.savez(
        path,
        ids=np.array(ids),
        models=np.array(models),
        logits=hostile,
        n_candidates=np.array([4] * len(ids)),
        values=hostile,
    )
    assert pickle.dumps(hostile[0])  # the payload is real: loading with allow_pickle=True would run it


def test_a_crafted_pickle_beside_a_checkpoint_does_not_run(tmp_path, small_dataset):
    tokenizer = make_tiny_tokenizer()
    from blender.rankers import PairRanker

    checkpoint = tmp_path / "run" / "best"
    PairRanker(make_tiny_encoder(len(tokenizer)), tokenizer, task_names=["gpt4_pref"], **TINY_BUDGETS).save(
        checkpoint
    )
    val = [parse_record(make_raw_record(100 + i), "t") for i in range(6)]
    marker = tmp_path / "pwned"
    npz = tmp_path / "run" / "eval" / "pair_logits_alpaca_blend_modern_val.npz"
    npz.parent.mkdir(parents=True)
    plant(npz, marker, [r.id for r in val], [r.models for r in val])
    os.utime(npz, (os.path.getmtime(checkpoint / "model.safetensors") + 10,) * 2)  # newer than the weights

    # As a cache it is unreadable, so treated as absent: the matrices are computed again and the file rewritten.
    assert read_pair_logits(npz, val, checkpoint) is None
    table = evaluate.run(
        compose_config(
            "eval",
            [
                f"checkpoint={checkpoint}",
                f"data.path={small_dataset}",
                "inference.show_progress=false",
                "eval.bootstrap_samples=20",
                "inference.precision=fp32",
            ],
        )
    )
    assert not marker.exists()
    assert {r["method"] for r in table["rows"]} >= {"PairRanker + max_logits"}
    assert len(load_pair_logits(npz).matrices) == 6

    # As a result (the comparison of experiments) it is an error that names the file.
    plant(npz, marker, [r.id for r in val], [r.models for r in val])
    with pytest.raises(
        SavedScoresError, match="pair_logits_alpaca_blend_modern_val.npz: not a saved-scores file"
    ):
        load_pair_logits(npz)
    assert not marker.exists()
