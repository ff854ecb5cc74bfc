import json

import numpy as np
import pytest
import torch

from blender.rankers import PairRanker, encode_records
from blender.rankers.pairranker import PairBatches, PairSampling, pair_loss
from blender.records import parse_record, sample_pairs, signal_matrix
from blender.training.checkpoints import latest_checkpoint
from blender.training.loop import TrainSettings, fit
from blender.training.rankers import train_ranker
from tests.conftest import make_raw_record, make_tiny_encoder, make_tiny_tokenizer


def fresh_ranker(seed: int = 0) -> PairRanker:
    tokenizer = make_tiny_tokenizer()
    return PairRanker(
        make_tiny_encoder(len(tokenizer), seed=seed),
        tokenizer,
        task_names=["gpt4_pref"],
        dropout=0.1,
        source_max_length=12,
        candidate_max_length=10,
        pooling="marker",
    )


def records(n: int, offset: int = 0):
    return [parse_record(make_raw_record(offset + i), "t") for i in range(n)]


def settings(**overrides) -> TrainSettings:
    base = dict(
        epochs=2,
        batch_size=4,
        lr=1e-3,
        mixed_precision="no",
        save_every_steps=2,
        log_every_steps=1,
        show_progress=False,
        warmup_ratio=0.0,
    )
    return TrainSettings(**{**base, **overrides})


def test_training_moves_every_parameter_and_keeps_the_best(tmp_path):
    ranker = fresh_ranker()
    before = {n: p.detach().clone() for n, p in ranker.named_parameters()}
    summary = train_ranker(
        ranker,
        records(12),
        records(4, 100),
        ["gpt4_pref"],
        "gpt4_pref",
        "m3",
        PairSampling(pairs_per_example=4),
        settings(),
        tmp_path,
    )
    assert np.isfinite(summary["train/loss"])
    unchanged = [n for n, p in ranker.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert unchanged == []
    # The best epoch is the first one whose val pick scored highest, and its value is the one kept.
    values = [h["val/top1_oracle"] for h in summary["history"]]
    assert len(values) == 2 and summary["best_epoch"] == values.index(max(values))
    assert summary["best_value"] == max(values)
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert (latest_checkpoint(tmp_path) / "trainer_state.json").is_file()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in row for row in logged) and any("val/top1_oracle" in row for row in logged)
    PairRanker.load(tmp_path / "best")  # loadable


def test_learns_a_simple_preference(tmp_path):
    # Longer candidates are better in every record; a few epochs on pairs should order them.
    ranker = fresh_ranker()
    summary = train_ranker(
        ranker,
        records(24),
        records(6, 100),
        ["gpt4_pref"],
        "gpt4_pref",
        "m3",
        PairSampling(pairs_per_example=6),
        settings(epochs=6),
        tmp_path,
    )
    assert summary["history"][-1]["val/top1_oracle"] == pytest.approx(0.8)


class Stop(Exception):
    pass


def make_run(output_dir, stop_at=None, checkpoint_hook=None):
    """12 training records, 12 batches an epoch, 2 epochs; `stop_at` raises in that loss call, as a kill would.
    Returns the trained ranker and how many loss calls this run made."""
    ranker = fresh_ranker()
    train = records(12)
    signal = [signal_matrix(r, ["gpt4_pref"]) for r in train]
    encoded = encode_records(ranker, train)
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        if stop_at is not None and calls["n"] > stop_at:
            raise Stop
        return pair_loss(model, batch)

    def epoch_batches(epoch):
        return PairBatches(
            ranker, encoded, sample_pairs(signal, 4, np.random.default_rng(epoch)), 4, seed=epoch
        )

    fit(
        ranker,
        loss_fn,
        epoch_batches,
        settings(save_every_steps=3, log_every_steps=1),
        output_dir,
        save_model=None,
        fingerprint={"recipe": "test"},
        checkpoint_hook=checkpoint_hook,
    )
    return ranker, calls["n"]


def test_resume_after_a_stop_matches_an_uninterrupted_run(tmp_path):
    run = make_run
    reference, _ = run(tmp_path / "straight")
    with pytest.raises(Stop):
        run(tmp_path / "stopped", stop_at=7)  # dies in epoch 0 after the step-6 checkpoint
    state = json.loads((latest_checkpoint(tmp_path / "stopped") / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["batch_in_epoch"] == 6
    resumed, steps_after_resume = run(tmp_path / "stopped")
    assert steps_after_resume == 24 - 6  # 12 batches per epoch, 2 epochs, 6 already done
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_the_configured_pair_weighting_reaches_the_sampler(tmp_path, monkeypatch):
    # Regression: `sampling.weighting` was once dropped on the way to sample_pairs, so "top" ran as uniform.
    import blender.rankers.pairranker as ranker_module

    seen = []
    original = ranker_module.sample_pairs

    def recording(*args, **kwargs):
        seen.append(args[5] if len(args) > 5 else kwargs.get("weighting", "uniform"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ranker_module, "sample_pairs", recording)
    train_ranker(
        fresh_ranker(),
        records(6),
        [],
        ["gpt4_pref"],
        "gpt4_pref",
        "m3",
        PairSampling(pairs_per_example=2, weighting="top"),
        settings(epochs=1),
        tmp_path,
    )
    assert seen and set(seen) == {"top"}


def test_an_unknown_pair_weighting_is_caught_with_the_config():
    with pytest.raises(
        ValueError, match=r"ranker\.sampling\.weighting='hard'; choose one of uniform, top, contested"
    ):
        PairSampling(weighting="hard")


def test_absolute_targets_reach_the_loss_and_train(tmp_path, monkeypatch):
    import blender.rankers.pairranker as ranker_module

    seen = []
    original = ranker_module.absolute_target_loss

    def recording(scores, signal):
        seen.append(signal.clone())
        return original(scores, signal)

    monkeypatch.setattr(ranker_module, "absolute_target_loss", recording)
    train = records(6)
    summary = train_ranker(
        fresh_ranker(),
        train,
        [],
        ["gpt4_pref"],
        "gpt4_pref",
        "m3",
        PairSampling(pairs_per_example=2, absolute_weight=0.5),
        settings(epochs=1),
        tmp_path,
    )
    assert np.isfinite(summary["train/loss"]) and seen
    known = {round(c.scores["gpt4_pref"], 6) for r in train for c in r.candidates}
    assert {round(v, 6) for batch in seen for v in batch.flatten().tolist()} <= known
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/absolute_loss" in row for row in logged)


def test_absolute_targets_refuse_a_signal_that_is_not_a_probability(tmp_path):
    raw = make_raw_record(0)
    raw["candidates"][1]["scores"]["gpt4_pref"] = 3.5
    train = [parse_record(raw, "t")] + records(3, 1)
    with pytest.raises(
        ValueError, match=r"absolute_weight needs signals in \[0, 1\]: record .* has gpt4_pref=3\.5"
    ):
        train_ranker(
            fresh_ranker(),
            train,
            [],
            ["gpt4_pref"],
            "gpt4_pref",
            "m3",
            PairSampling(absolute_weight=1.0),
            settings(epochs=1),
            tmp_path,
        )


def test_a_negative_absolute_weight_is_caught_with_the_config():
    with pytest.raises(ValueError, match=r"ranker\.sampling\.absolute_weight=-1\.0; it must be 0 or more"):
        PairSampling(absolute_weight=-1.0)
