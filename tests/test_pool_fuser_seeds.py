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
