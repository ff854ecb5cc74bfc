"""scripts/probe_frozen_embeddings.py: the ridge strength is chosen on train's held-out folds (never on val),
another dataset's train split joins only the folds its instructions are fitted in, and the embeddings are
computed once per setting and read back after."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_script, make_raw_record, write_jsonl


def pure_noise(seed: int):
    """60 instructions of 4 candidates with 500 features of pure noise: their centred features and targets, and
    the raw targets. A nearly unregularised head fits 240 candidates exactly, so scored in-sample it would pick
    the best candidate every time; held out, near chance."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 4, 500))
    y = rng.normal(size=(60, 4))
    return x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True), y


def test_the_strength_is_scored_on_held_out_instructions_not_on_what_it_was_fit_on():
    probe = load_script("probe_frozen_embeddings")
    x_centred, y_centred, y = pure_noise(0)
    rows = np.arange(60)
    in_sample = probe.fit_predict(x_centred, y_centred, x_centred, 1e-6)
    assert y[rows, in_sample.argmax(1)].mean() == y.max(1).mean()
    chosen, means = probe.cross_validated_alpha(x_centred, y_centred, y, [1e-6, 1.0])
    assert means[1e-6] < y.max(1).mean() - 0.5  # held out, noise picks near chance (mean 0), far below best
    assert chosen == max(means, key=means.get)


def test_the_pairwise_head_learns_the_direction_that_orders_the_candidates_and_skips_ties():
    probe = load_script("probe_frozen_embeddings")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5, 6))
    direction = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    y = x @ direction
    weights = probe.pairwise_probe(x, y, alpha=0.01, min_delta=0.1).coef_[0]
    cosine = weights @ direction / np.linalg.norm(weights) / np.linalg.norm(direction)
    assert cosine > 0.99
    scores = probe.fit_predict(x, y, x, 0.01, head="pairwise")
    assert (scores.argmax(1) == y.argmax(1)).all()
    with pytest.raises(ValueError, match="min-delta 100"):
        probe.pairwise_probe(x, y, alpha=1.0, min_delta=100.0)  # every gap is a tie: no pair to learn from


def test_embeddings_are_computed_once_per_setting_and_reused(tmp_path):
    probe = load_script("probe_frozen_embeddings")
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(3, 2)

    key = {"backbone": "minilm", "max_length": 8, "dtype": "fp32"}
    first = probe.cached_embeddings(["a", "b", "c"], tmp_path, key, compute)
    again = probe.cached_embeddings(["a", "b", "c"], tmp_path, key, compute)
    other = probe.cached_embeddings(["a", "b", "c"], tmp_path, {**key, "max_length": 16}, compute)
    assert len(calls) == 2  # the same texts and settings read the file back; another length recomputes
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, other)
    assert len(list(tmp_path.glob("embeddings_*.npy"))) == 2


def test_extra_training_data_joins_only_the_folds_that_fit_its_instructions():
    probe = load_script("probe_frozen_embeddings")
    # The extra dataset answers the same 60 instructions with the very same candidates, so fitted on a held-out
    # instruction's extra pairs the head would learn that instruction's order by heart and pick its best.
    x_centred, y_centred, y = pure_noise(2)
    ids = np.array([f"i{k}" for k in range(60)])
    leaky = probe.ExtraTrain(ids, x_centred, 10 * y_centred, min_delta=0.0)
    rows = np.arange(60)
    learnt_by_heart = probe.fit_predict(
        x_centred[:0], y_centred[:0], x_centred, 1e-3, head="pairwise", extra=(leaky,)
    )
    assert y[rows, learnt_by_heart.argmax(1)].mean() == y.max(1).mean()  # the channel a leak would use
    _, means = probe.cross_validated_alpha(
        x_centred, y_centred, y, [1e-3], ids=ids, extra=(leaky,), head="pairwise", min_delta=0.0
    )
    assert means[1e-3] < y.max(1).mean() - 0.5  # held out: noise picks near chance (mean 0), far below best
    assert len(leaky.of(ids[:7]).x) == 7
    with pytest.raises(ValueError, match="pairwise head only"):
        probe.fit_predict(x_centred, y_centred, x_centred, 1.0, extra=(leaky,))


def test_an_extra_dataset_sharing_an_instruction_with_val_is_refused(tmp_path):
    probe = load_script("probe_frozen_embeddings")
    write_jsonl(tmp_path / "extra" / "train.jsonl", [make_raw_record(i) for i in range(3)])

    def features(records):
        raise AssertionError("nothing is embedded before the check")

    with pytest.raises(OSError, match=r"no such data folder.*point --extra-train at"):
        probe.extra_train(tmp_path / "missing", set(), features, "gpt4_pref", "logit", 1.0)
    with pytest.raises(ValueError, match=r"test/2.*leaks val"):
        probe.extra_train(tmp_path / "extra", {"test/2"}, features, "gpt4_pref", "logit", 1.0)
    extra = probe.extra_train(
        tmp_path / "extra",
        {"test/9"},
        lambda records: (np.zeros((len(records), 4, 2)), None, None),
        "gpt4_pref",
        "logit",
        1.0,
    )
    # make_raw_record scores candidate k (k+1)/5: log-odds, centred within the instruction
    logits = np.log(np.array([1, 2, 3, 4]) / np.array([4, 3, 2, 1]))
    np.testing.assert_allclose(extra.y[0], logits - logits.mean())
    assert list(extra.ids) == ["test/0", "test/1", "test/2"]
