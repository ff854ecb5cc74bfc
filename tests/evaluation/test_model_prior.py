"""The model prior: priors as log-odds of train means, z-scored mixing, a weight chosen on other data only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender.evaluation.methods import evaluate_ranker_with_methods
from blender.evaluation.model_prior import (
    ModelPrior,
    cross_fitted_mix,
    cross_fitted_scores,
    fit_priors,
    fit_weight,
)
from blender.records import Candidate, Record
from blender.records.schema import parse_record


def record(k: int, prefs: dict[str, float]) -> Record:
    return Record(
        id=str(k),
        instruction="i",
        input="",
        output="o",
        candidates=[
            Candidate(m, "t" * (i + 1), scores={"gpt4_pref": p}) for i, (m, p) in enumerate(prefs.items())
        ],
    )


def test_priors_are_log_odds_of_the_train_means():
    train = [record(0, {"a": 0.5, "b": 0.2}), record(1, {"a": 1.0, "b": 0.0})]
    priors = fit_priors(train, "gpt4_pref")
    # a: mean 0.75 -> log 3; b: mean 0.1 -> log(1/9).
    assert priors["a"] == pytest.approx(np.log(3.0))
    assert priors["b"] == pytest.approx(np.log(1 / 9))


def test_scores_outside_zero_one_keep_their_mean():
    train = [record(0, {"a": 3.0, "b": -1.0}), record(1, {"a": 1.0, "b": -3.0})]
    assert fit_priors(train, "gpt4_pref") == {"a": 2.0, "b": -2.0}


def test_combined_score_is_z_ranker_plus_weight_z_prior():
    prior = ModelPrior({"a": 1.0, "b": 0.0, "c": -1.0}, weight=2.0)
    combined = prior.combine(np.array([0.0, 0.0, 3.0]), ["a", "b", "c"])
    z_ranker = (np.array([0, 0, 3.0]) - 1.0) / np.sqrt(2.0)
    z_prior = np.array([1.0, 0.0, -1.0]) / np.sqrt(2 / 3)
    np.testing.assert_allclose(combined, z_ranker + 2.0 * z_prior)


def test_an_unseen_model_gets_the_mean_prior():
    prior = ModelPrior({"a": 2.0, "b": 0.0})
    np.testing.assert_allclose(prior.prior_scores(["a", "new", "b"]), [2.0, 1.0, 0.0])
    assert prior.unknown_models == ["new"]


def test_the_weight_is_zero_when_the_ranker_is_right_and_large_when_the_prior_is():
    prior = ModelPrior({"good": 1.0, "bad": -1.0})
    # The ranker prefers "bad" slightly; the oracle prefers "good".
    records = [record(k, {"good": 0.9, "bad": 0.1}) for k in range(4)]
    scores = [np.array([0.0, 0.1]) for _ in records]
    # z(ranker) = [-1, 1], z(prior) = [1, -1]: from weight 1 on, "good" scores at least as high (a tie goes to
    # the first candidate, as argmax does), so 1 is the smallest best weight.
    assert fit_weight(prior, scores, records, "gpt4_pref") == 1.0
    right = [np.array([0.1, 0.0]) for _ in records]
    assert fit_weight(prior, right, records, "gpt4_pref") == 0.0


def test_cross_fitting_scores_each_fold_with_the_other_folds_weight():
    prior = ModelPrior({"good": 1.0, "bad": -1.0})
    # Records 0-1: the prior is right (a weight helps); records 2-3: the prior is wrong (no weight is best).
    records = [record(0, {"good": 0.9, "bad": 0.1}), record(1, {"good": 0.9, "bad": 0.1})]
    records += [record(2, {"good": 0.1, "bad": 0.9}), record(3, {"good": 0.1, "bad": 0.9})]
    scores = [np.array([0.0, 0.1])] * 4
    combined, weights = cross_fitted_scores(prior, scores, records, "gpt4_pref", folds=4, seed=0)
    # Four folds of one record each. A record of the first pair is scored with the weight the other three
    # chose (the prior helps one of them and hurts two: weight 0), so its pick stays "bad"; a record of the
    # second pair gets weight 1 (helps two, hurts one), which moves its pick to "good", the wrong one for it.
    # Cross-fitting reports what the weight does on data it was not chosen on, even when that is worse.
    assert sorted(weights) == [0.0, 0.0, 1.0, 1.0]
    assert [int(np.argmax(c)) for c in combined] == [1, 1, 0, 0]
    helped = [record(k, {"good": 0.9, "bad": 0.1}) for k in range(4)]
    combined, weights = cross_fitted_scores(prior, scores, helped, "gpt4_pref", folds=2, seed=0)
    assert weights == [1.0, 1.0] and [int(np.argmax(c)) for c in combined] == [0, 0, 0, 0]


def test_any_second_score_mixes_as_the_prior_does_its_weight_fitted_on_the_other_fold():
    # The second scorer (a frozen probe, say) is per record, not per model: right on records 0-3, where the
    # ranker is wrong. Its weight is chosen on one fold and applied to the other.
    records = [record(k, {"a": 0.9, "b": 0.1}) for k in range(4)]
    ranker = [np.array([0.0, 0.1])] * 4
    probe = [np.array([1.0, 0.0])] * 4
    combined, weights = cross_fitted_mix(ranker, probe, records, "gpt4_pref", folds=2, seed=0)
    assert weights == [1.0, 1.0] and [int(np.argmax(c)) for c in combined] == [0, 0, 0, 0]
    as_prior, _ = cross_fitted_scores(ModelPrior({"a": 1.0, "b": 0.0}), ranker, records, "gpt4_pref", seed=0)
    np.testing.assert_allclose(np.array(combined), np.array(as_prior))  # the prior is one such second score
    wrong = [np.array([0.0, 1.0])] * 4
    _, weights = cross_fitted_mix(ranker, wrong, records, "gpt4_pref", folds=2, seed=0)
    assert weights == [0.0, 0.0]


def test_cross_fitting_needs_two_folds():
    with pytest.raises(ValueError, match="2 <= folds"):
        cross_fitted_scores(
            ModelPrior({"a": 0.0}), [np.zeros(1)], [record(0, {"a": 0.5})], "gpt4_pref", folds=2
        )


def test_save_and_load_round_trip(tmp_path):
    prior = ModelPrior({"a": 0.5, "b": -0.25}, weight=1.5, oracle="gpt4_pref", fitted_on="val")
    prior.save(tmp_path / "model_prior.json")
    assert ModelPrior.load(tmp_path) == prior


def test_a_malformed_prior_file_is_refused_by_name(tmp_path):
    path = tmp_path / "model_prior.json"
    path.write_text(json.dumps({"priors": {"a": "x"}, "weight": 1}))
    with pytest.raises(ValueError, match="model_prior.json: not a model prior file"):
        ModelPrior.load(path)
    with pytest.raises(FileNotFoundError, match="no model prior here"):
        ModelPrior.load(tmp_path / "elsewhere")


def test_the_ranking_table_gains_the_prior_row(tiny_ranker):
    from tests.conftest import make_raw_record

    train = [parse_record(make_raw_record(i), "train") for i in range(6)]
    val = [parse_record(make_raw_record(100 + i), "val") for i in range(6)]
    table, rankers, _, prior = evaluate_ranker_with_methods(
        tiny_ranker, val, "m3", "gpt4_pref", ["max_logits"], bootstrap_samples=50, prior_train=train
    )
    names = [row["method"] for row in table["rows"]]
    assert names[-2:] == ["PairRanker + max_logits", "PairRanker + max_logits + model prior"]
    # m3 is best in every record and the untrained ranker is not, so the prior earns a weight, and at the
    # largest weight the combined scores pick m3 everywhere.
    assert prior.priors["m3"] == max(prior.priors.values())
    assert table["rows"][-2]["top1_pct"] < 100.0 and prior.weight > 0
    heavy = [prior.combine(s, r.models, 4.0) for s, r in zip(rankers[0].scores, val, strict=True)]
    assert [r.models[int(np.argmax(c))] for c, r in zip(heavy, val, strict=True)] == ["m3"] * 6
    row = table["rows"][-1]
    assert [d["versus"] for d in table["differences"] if d["method"] == row["method"]] == [
        "Longest",
        "model: m3",
    ]


def test_the_prior_is_read_by_the_first_oracle_train_carries():
    from blender.evaluation.model_prior import first_oracle_of

    train = [record(0, {"a": 0.5, "b": 0.2})]  # gpt4_pref, and no judge labels (as MixInstruct's train)
    assert first_oracle_of(train, ["cmp_results", "gpt4_pref"]) == "gpt4_pref"
    assert first_oracle_of(train, ["cmp_results", "bleu"]) is None
