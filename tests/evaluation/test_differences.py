"""The paired difference of two answer sets: its mean worked out by hand, its interval over instructions."""

from __future__ import annotations

import pytest

from blender.evaluation.differences import paired_differences, render_differences
from blender.records import Candidate, Record


def record(k: int, first: float, second: float) -> Record:
    return Record(
        id=str(k),
        instruction="i",
        input="",
        output="o",
        candidates=[Candidate("m", "t")],
        extra={"fused_scores": {"bleu": first}, "fused_zero_shot_scores": {"bleu": second}},
    )


def test_paired_difference_and_its_interval():
    # Differences 1, 2, 3, 2: mean 2; every resample's mean lies in [1, 3].
    records = [record(0, 5, 4), record(1, 6, 4), record(2, 9, 6), record(3, 2, 0)]
    d = paired_differences(records, "fused", "fused_zero_shot", ["bleu"], n_boot=200, seed=0)["bleu"]
    assert (
        d["first"] == pytest.approx(5.5)
        and d["second"] == pytest.approx(3.5)
        and d["difference"] == pytest.approx(2.0)
    )
    low, high = d["difference_ci"]
    assert 1 <= low <= 2 <= high <= 3 and d["above_zero"]
    # A difference that changes sign is not above zero.
    mixed = [record(0, 1, 0), record(1, 0, 1), record(2, 1, 0), record(3, 0, 1)]
    assert not paired_differences(mixed, "fused", "fused_zero_shot", ["bleu"], n_boot=200)["bleu"][
        "above_zero"
    ]
    assert "| bleu | 5.5000 | 3.5000 | +2.0000" in render_differences({"bleu": d}, "A", "B", "t")
