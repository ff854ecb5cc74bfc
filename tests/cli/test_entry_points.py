"""The Hydra entry points on small data: the smoke run end to end, resume, and clear errors on bad input."""

import json
import subprocess
import sys

import pytest

from blender.cli import evaluate, train_ranker
from blender.rankers.saved_scores import load_pair_logits
from blender.records import DataPathError, RecordError
from tests.conftest import REPO, compose_config, make_raw_record, write_jsonl


def smoke(tmp_path, data_dir, *extra):
    return compose_config(
        "train_ranker",
        # PairRanker's rows and saved matrices (the default kind is the listwise ranker's: tests/rankers)
        [
            "experiment=smoke",
            "ranker=pairranker",
            f"data.path={data_dir}",
            f"output_dir={tmp_path / 'run'}",
            *extra,
        ],
    )


def test_smoke_run_trains_evaluates_and_writes_the_table(tmp_path, small_dataset):
    summary = train_ranker.run(smoke(tmp_path, small_dataset))
    assert summary["global_step"] == 2
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    assert {
        "Random (expected)",
        "Longest",
        "Oracle (gpt4_pref)",
        "PairRanker + max_logits",
        "PairRanker + bubble",
    } <= set(rows)
    assert rows["Oracle (gpt4_pref)"]["gpt_rank"] == 1.0
    table = json.loads((tmp_path / "run" / "eval" / "ranking_alpaca_blend_modern_val.json").read_text())
    assert table["n_examples"] == 4
    markdown = (tmp_path / "run" / "eval" / "ranking_alpaca_blend_modern_val.md").read_text()
    assert "PairRanker + max_wins" in markdown
    saved = load_pair_logits(tmp_path / "run" / "eval" / "pair_logits_alpaca_blend_modern_val.npz")
    assert [m.shape for m in saved.matrices] == [(4, 4)] * 4 and saved.ids == [
        f"test/{100 + i}" for i in range(4)
    ]

    # make eval on the checkpoint gives the same ranker rows.
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={tmp_path / 'run' / 'best'}",
            f"data.path={small_dataset}",
            "data.limit_val=4",
            "inference.show_progress=false",
            "eval.bootstrap_samples=100",
            "inference.precision=fp32",
        ],
    )
    again = {r["method"]: r for r in evaluate.run(cfg)["rows"]}
    assert again["PairRanker + max_logits"]["top1_oracle"] == pytest.approx(
        rows["PairRanker + max_logits"]["top1_oracle"]
    )


def test_a_finished_run_resumes_to_done(tmp_path, small_dataset):
    train_ranker.run(smoke(tmp_path, small_dataset, "evaluate_after_training=false"))
    summary = train_ranker.run(smoke(tmp_path, small_dataset, "evaluate_after_training=false"))
    assert summary["global_step"] == 2  # nothing left to do after resuming


def test_wrong_path_names_it(tmp_path):
    with pytest.raises(DataPathError, match="nowhere: no such data folder"):
        train_ranker.run(smoke(tmp_path, tmp_path / "nowhere"))


def test_malformed_record_names_file_and_line(tmp_path, small_dataset):
    rows = [make_raw_record(i) for i in range(5)]
    del rows[3]["candidates"][0]["text"]
    write_jsonl(small_dataset / "train.jsonl", rows)
    with pytest.raises(
        RecordError, match=r"train.jsonl:4 \(id 'test/3'\): candidates\[0\]: candidate has no 'text'"
    ):
        train_ranker.run(smoke(tmp_path, small_dataset))


def test_missing_training_signal_names_it(tmp_path, small_dataset):
    with pytest.raises(RecordError, match="no score 'bartscore' to train on"):
        train_ranker.run(smoke(tmp_path, small_dataset, "data.signals=[bartscore]"))


def test_eval_of_a_missing_checkpoint(tmp_path, small_dataset):
    # Refused where the config's output folder is resolved: before anything is created for it.
    cfg = compose_config("eval", [f"checkpoint={tmp_path / 'none'}", f"data.path={small_dataset}"])
    with pytest.raises(Exception, match="none: not a ranker checkpoint"):
        evaluate.run(cfg)
    assert not (tmp_path / "none").exists() and not (tmp_path / "eval").exists()


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["train_ranker", "evaluate"])
def test_command_line_reports_bad_input_in_one_line(tmp_path, entry):
    args = [
        f"data.path={tmp_path / 'nowhere'}",
        f"output_dir={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    args += ["experiment=smoke"] if entry == "train_ranker" else [f"checkpoint={tmp_path}"]
    if entry == "evaluate":  # a checkpoint that exists, so the data path is what fails
        from blender.rankers import PairRanker
        from tests.conftest import TINY_BUDGETS, make_tiny_encoder, make_tiny_tokenizer

        tokenizer = make_tiny_tokenizer()
        PairRanker(make_tiny_encoder(len(tokenizer)), tokenizer, **TINY_BUDGETS).save(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", f"blender.cli.{entry}", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "nowhere: no such data folder" in done.stderr and "Traceback" not in output  # errors on stderr


def test_wandb_logger_runs_offline(tmp_path, small_dataset, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train_ranker.run(smoke(tmp_path, small_dataset, "logger=wandb", "evaluate_after_training=false"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_eval_reuses_the_training_runs_matrices_until_something_changes(tmp_path, small_dataset, monkeypatch):
    train_ranker.run(smoke(tmp_path, small_dataset))
    overrides = [
        f"checkpoint={tmp_path / 'run' / 'best'}",
        f"data.path={small_dataset}",
        "data.limit_val=4",
        "inference.show_progress=false",
        "eval.bootstrap_samples=100",
    ]
    first = {
        r["method"]: r
        for r in evaluate.run(compose_config("eval", [*overrides, "inference.precision=fp32"]))["rows"]
    }

    import blender.evaluation.methods as evaluation

    def no_model_run(*args, **kwargs):
        raise AssertionError("the saved matrices should have been reused")

    monkeypatch.setattr(evaluation, "full_matrices", no_model_run)
    again = {
        r["method"]: r
        for r in evaluate.run(compose_config("eval", [*overrides, "inference.precision=fp32"]))["rows"]
    }
    for method in ("PairRanker + max_logits", "PairRanker + bubble"):
        assert again[method]["top1_oracle"] == first[method]["top1_oracle"]
        assert again[method]["seconds_per_instruction"] == pytest.approx(
            first[method]["seconds_per_instruction"]
        )
    # Another precision (or other records, or newer weights) runs the model again.
    with pytest.raises(AssertionError, match="should have been reused"):
        evaluate.run(compose_config("eval", [*overrides, "inference.precision=bf16"]))


def test_the_seed_fixes_the_initial_weights_too(tmp_path, small_dataset):
    """Two runs of one config end with the same weights: the head and the marker embeddings are drawn after
    seeding, not from whatever state the process was in (a different seed gives other weights)."""
    import torch
    from safetensors.torch import load_file

    def final_weights(name, *extra):
        torch.manual_seed(len(name))  # a process state the run must not depend on
        cfg = smoke(tmp_path / name, small_dataset, "evaluate_after_training=false", *extra)
        train_ranker.run(cfg)
        (weights,) = (tmp_path / name / "run" / "best").glob("*.safetensors")
        return load_file(weights)

    first, again, other = final_weights("a"), final_weights("bb"), final_weights("c", "trainer.seed=7")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
