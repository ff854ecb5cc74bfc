"""Interrupted runs, changed configs and shared run folders: resume is exact or refused, nothing is lost or
written twice, and options are checked when they are read."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from blender.cli import evaluate, train_ranker
from blender.records import DataSettings
from blender.settings import SettingsError
from blender.training.checkpoints import RunFolderError, latest_checkpoint, run_folder_lock
from blender.training.loop import NothingToTrainError, TrainSettings
from tests.conftest import REPO, compose_config
from tests.training.test_loop import Stop, make_run


def smoke(tmp_path, data, *extra):
    return compose_config(
        "train_ranker",
        [
            "experiment=smoke",
            f"data.path={data}",
            f"output_dir={tmp_path / 'run'}",
            "evaluate_after_training=false",
            *extra,
        ],
    )


def test_a_rerun_with_another_learning_rate_is_refused_naming_the_key(tmp_path, small_dataset):
    train_ranker.run(smoke(tmp_path, small_dataset))
    with pytest.raises(
        RunFolderError, match=r"trainer\.lr: 5e-05 -> 0\.001.*another run_id.*trainer\.resume=force"
    ):
        train_ranker.run(smoke(tmp_path, small_dataset, "trainer.lr=1e-3"))
    with pytest.raises(RunFolderError, match=r"data\.limit_train: 8 -> 6"):
        train_ranker.run(smoke(tmp_path, small_dataset, "data.limit_train=6"))
    # The data file itself changed (same settings): its digest differs.
    (small_dataset / "train.jsonl").write_text(
        (small_dataset / "train.jsonl").read_text().replace("good", "fine")
    )
    with pytest.raises(RunFolderError, match=r"data_files\.train"):
        train_ranker.run(smoke(tmp_path, small_dataset))
    # On purpose: the run continues (and says so).
    summary = train_ranker.run(smoke(tmp_path, small_dataset, "trainer.resume=force"))
    assert summary["global_step"] == 2


def test_the_same_config_resumes_a_finished_run_without_training_again(tmp_path, small_dataset):
    first = train_ranker.run(smoke(tmp_path, small_dataset))
    again = train_ranker.run(smoke(tmp_path, small_dataset))
    assert again["global_step"] == first["global_step"] == 2


@pytest.mark.parametrize("event", ["written", "renamed", "pointed", "cleaned"])
def test_a_kill_at_any_point_of_the_swap_resumes_from_the_newest_complete_checkpoint(tmp_path, event):
    reference, _ = make_run(tmp_path / "straight")
    seen = []

    def kill_at_the_second_swap(name):
        seen.append(name)
        if name == event and seen.count(name) == 2:  # the step-6 checkpoint; step 3's is complete
            raise Stop

    with pytest.raises(Stop):
        make_run(tmp_path / "killed", checkpoint_hook=kill_at_the_second_swap)
    newest = latest_checkpoint(tmp_path / "killed")
    step = json.loads((newest / "trainer_state.json").read_text())["global_step"]
    # Before the rename the step-6 folder is not complete: step 3 is the newest; from the rename on, step 6 is.
    assert step == (3 if event == "written" else 6)
    resumed, _ = make_run(tmp_path / "killed")
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]
    assert steps == list(range(1, 25))  # one row per step, none twice, none lost


def test_metrics_logged_after_the_checkpoint_are_not_duplicated_on_resume(tmp_path):
    with pytest.raises(Stop):
        make_run(tmp_path / "run", stop_at=8)  # steps 7 and 8 are logged, the checkpoint is at 6
    make_run(tmp_path / "run")
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]
    assert steps == list(range(1, 25))


@pytest.mark.slow
def test_two_runs_in_one_folder_the_second_is_refused(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from blender.training.checkpoints import run_folder_lock
            with run_folder_lock({str(tmp_path)!r}):
                print("held", flush=True)
                time.sleep(60)
        """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RunFolderError, match=rf"{tmp_path} is in use by pid {holder.pid}.*another run_id"
        ):
            with run_folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_folder_lock(tmp_path):  # free once the holder is gone
        pass


def test_nothing_to_train_exits_with_an_error(tmp_path, small_dataset):
    # Every pair tied: no training example, so no model; the run says so instead of ending quietly.
    with pytest.raises(NothingToTrainError, match="nothing was trained"):
        train_ranker.run(smoke(tmp_path, small_dataset, "data.min_delta=10"))
    for option in ("trainer.epochs=0", "trainer.max_steps=0"):
        with pytest.raises(SettingsError, match=rf"{option.split('=')[0]}=0: must be 1 or more"):
            train_ranker.run(smoke(tmp_path, small_dataset, option))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("trainer.lr=abc", r"trainer\.lr='abc': expected a number"),
        ("trainer.batch_size=0", r"trainer\.batch_size=0: must be 1 or more"),
        ("trainer.grad_accum=0", r"trainer\.grad_accum=0: must be 1 or more"),
        ("trainer.save_every_steps=0", r"trainer\.save_every_steps=0: must be 1 or more"),
        ("trainer.seed=abc", r"trainer\.seed='abc': expected an integer"),
        ("trainer.best_mode=maximum", r"trainer\.best_mode='maximum': choose one of max, min"),
        ("trainer.best_metric=val/top1_oracel", r"trainer\.best_metric='val/top1_oracel' is not one of"),
        ("data.limit_train=abc", r"data\.limit_train='abc': expected an integer or null"),
        ("data.limit_train=-1", r"data\.limit_train=-1: must be 1 or more"),
        ("inference.max_batch_size=0", r"inference\.max_batch_size=0: must be 1 or more"),
        (
            "inference.precision=fp8",
            r"inference\.precision='fp8': choose one of auto, fp32, bf16, fp16, int8",
        ),
        ("eval.bootstrap_samples=-3", r"eval\.bootstrap_samples=-3: must be 1 or more"),
        ("logger.name=tensorboard", r"logger\.name='tensorboard': choose one of none, wandb"),
    ],
)
def test_options_are_checked_when_read_naming_key_value_and_range(tmp_path, small_dataset, option, message):
    with pytest.raises((SettingsError, ValueError), match=message):
        train_ranker.run(smoke(tmp_path, small_dataset, option))
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def test_settings_are_checked_from_python_too():
    with pytest.raises(SettingsError, match=r"trainer\.warmup_ratio=2: must lie in \[0, 1\]"):
        TrainSettings(warmup_ratio=2)
    with pytest.raises(SettingsError, match=r"data\.limit_val=0"):
        DataSettings(limit_val=0)


@pytest.mark.slow
@pytest.mark.parametrize("run_id", ["../../escape", "a/b", ".."])
def test_a_run_id_with_a_path_in_it_is_refused_and_writes_nothing(tmp_path, run_id):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blender.cli.train_ranker",
            "experiment=smoke",
            f"run_id={run_id}",
            f"paths.outputs={tmp_path / 'outputs'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "run_id" in done.stderr and "a name, not a path" in done.stderr, done.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "escape").exists()


@pytest.mark.slow
def test_a_mistyped_checkpoint_creates_nothing(tmp_path):
    typo = tmp_path / "runs" / "2026-typo" / "best"
    done = subprocess.run(
        [sys.executable, "-m", "blender.cli.evaluate", f"checkpoint={typo}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "not a ranker checkpoint" in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


def test_eval_still_writes_beside_a_real_checkpoint(tmp_path, small_dataset):
    train_ranker.run(smoke(tmp_path, small_dataset))
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={tmp_path / 'run' / 'best'}",
            f"data.path={small_dataset}",
            "inference.show_progress=false",
            "eval.bootstrap_samples=20",
        ],
    )
    assert cfg.output_dir == str(tmp_path / "run" / "eval")
    evaluate.run(cfg)


@pytest.mark.slow
def test_a_bad_option_on_the_command_line_is_one_line_on_stderr_and_exit_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blender.cli.train_ranker",
            "experiment=smoke",
            "trainer.lr=abc",
            f"output_dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "trainer.lr='abc': expected a number" in done.stderr and "Traceback" not in done.stderr
