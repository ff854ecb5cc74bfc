"""data.extra_train: another dataset's train split joins a ranker's training (and its run's fingerprint); one that
shares an instruction with the held-out split is refused before anything trains, and a fuser refuses it."""

from __future__ import annotations

import json
import logging

import pytest

from blender.cli import train_fuser, train_ranker
from blender.records import DataSettings
from blender.records.loading import DataPathError
from blender.settings import SettingsError
from tests.cli.test_train_fuser import smoke_fuser_config
from tests.conftest import make_raw_record, write_jsonl
from tests.training.test_run_folders import smoke


def other_dataset(folder, first_index: int):
    write_jsonl(folder / "train.jsonl", [make_raw_record(first_index + i, n_candidates=6) for i in range(5)])
    return folder


def test_extra_train_records_are_trained_on_and_fingerprinted(tmp_path, small_dataset, caplog):
    extra = other_dataset(tmp_path / "extra", 200)  # 6 candidates where the main data has 4: any count goes
    with caplog.at_level(logging.INFO):
        train_ranker.run(smoke(tmp_path, small_dataset, f"data.extra_train=[{extra}]"))
    assert "5 more training instructions" in caplog.text
    assert "13 instructions" in caplog.text  # the training plan: 8 of data.path's (limit_train) and 5 more
    fingerprint = json.loads((tmp_path / "run" / "run_fingerprint.json").read_text())
    assert any(key.startswith("data_files.extra_train:") for key in fingerprint)


def test_extra_train_sharing_an_instruction_with_val_is_refused(tmp_path, small_dataset):
    leaky = other_dataset(tmp_path / "leaky", 102)  # ids test/102 .. test/106: val's test/102 and test/103
    with pytest.raises(SettingsError, match=r"data\.extra_train: 2 train instruction.*leaky.*leaks it"):
        train_ranker.run(smoke(tmp_path, small_dataset, f"data.extra_train=[{leaky}]"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_extra_train_needs_records_with_candidates():
    with pytest.raises(SettingsError, match="extra_train"):
        DataSettings(format="preference", extra_train=["somewhere"])


def test_a_fuser_refuses_extra_train(tmp_path, small_dataset):
    cfg = smoke_fuser_config(tmp_path, small_dataset, f"data.extra_train=[{tmp_path / 'extra'}]")
    with pytest.raises(SettingsError, match="extra training data is for rankers"):
        train_fuser.run(cfg)


def test_a_missing_extra_folder_names_the_option_that_gave_it(tmp_path):
    data = DataSettings(path=str(tmp_path), extra_train=[str(tmp_path / "missing")])
    with pytest.raises(DataPathError, match=r"missing: no such data folder.*point data\.extra_train at"):
        data.load_extra_train([])
