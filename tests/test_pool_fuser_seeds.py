"""scripts/pool_fuser_seeds.py: a fuser recipe's figures over several seeds (each instruction's mean over the
runs, then a bootstrap over instructions), and the answers read in record order or refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_script


def write_answers(path: Path, answers: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "fused": a}) + "\n" for i, a in answers.items()))
    return path


def test_pooling_averages_each_instruction_over_the_runs_before_the_bootstrap():
    pool = load_script("pool_fuser_seeds")
    # Two runs that disagree on every instruction: pooled per instruction they agree (0.5 each), so the
    # interval has no width. Pooling the 2 x 2 answers as four draws would give an interval around 0.5 instead.
    pooled = pool.pooled_metrics({"bleu": np.array([[1.0, 0.0], [0.0, 1.0]])})
    assert pooled["bleu"]["mean"] == 0.5
    assert pooled["bleu"]["ci"] == [0.5, 0.5]


def test_answers_come_back_in_record_order(tmp_path):
    pool = load_script("pool_fuser_seeds")
    path = write_answers(tmp_path / "fused.jsonl", {"b": "second", "a": "first"})
    assert pool.read_answers(path, ["a", "b"]) == ["first", "second"]


def test_answers_of_other_records_are_refused_with_the_file_named(tmp_path):
    pool = load_script("pool_fuser_seeds")
    path = write_answers(tmp_path / "fused.jsonl", {"a": "first", "c": "other"})
    with pytest.raises(ValueError, match=r"fused\.jsonl: 2 answers for 2 records \(1 ids missing"):
        pool.read_answers(path, ["a", "b"])


def test_an_answer_row_without_its_field_is_refused_with_the_file_and_line(tmp_path):
    pool = load_script("pool_fuser_seeds")
    path = tmp_path / "fused.jsonl"
    path.write_text(json.dumps({"id": "a", "fused": "first"}) + "\n" + json.dumps({"id": "b"}) + "\n")
    with pytest.raises(ValueError, match=r"fused\.jsonl:2: no 'fused' field"):
        pool.read_answers(path, ["a", "b"])


def test_the_difference_to_a_baseline_is_paired_by_instruction():
    pool = load_script("pool_fuser_seeds")
    # One run 0.1 above the baseline on both instructions. Unpaired, the two sets' intervals ([0.1, 10.0] and
    # [0.0, 9.9]) overlap; paired, every resample's difference is 0.1.
    difference = pool.paired_difference({"bleu": np.array([[10.0, 0.1]])}, {"bleu": np.array([9.9, 0.0])})
    assert difference["bleu"]["mean"] == pytest.approx(0.1)
    assert difference["bleu"]["ci"] == pytest.approx([0.1, 0.1])
    assert difference["bleu"]["above_zero"] is True


def test_the_difference_to_a_baseline_averages_the_runs_first():
    pool = load_script("pool_fuser_seeds")
    # Runs 2 and 0 on the first instruction average to 1, the baseline's score there: a zero difference.
    # Both runs score 1 on the second, 1 above the baseline's 0. So the differences are [0, 1]: mean 0.5,
    # and the resamples that draw the first instruction twice put the interval's low end at 0.
    difference = pool.paired_difference(
        {"rougeL": np.array([[2.0, 1.0], [0.0, 1.0]])}, {"rougeL": np.array([1.0, 0.0])}
    )
    assert difference["rougeL"]["mean"] == pytest.approx(0.5)
    assert difference["rougeL"]["ci"][0] == pytest.approx(0.0)
    assert difference["rougeL"]["above_zero"] is False
