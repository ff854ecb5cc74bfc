import numpy as np
import pytest

from blender.evaluation import Method, best_model_on, oracle_scores, ranking_table, render_markdown
from blender.evaluation.methods import baseline_methods
from blender.records import parse_record
from tests.conftest import make_raw_record


@pytest.fixture
def records():
    rows = [make_raw_record(i) for i in range(4)]
    # Example 3: m0 is best by gpt4_pref, so no single model is always best.
    rows[3]["candidates"][0]["scores"]["gpt4_pref"] = 0.95
    return [parse_record(r, "t") for r in rows]


def row(table, name):
    return next(r for r in table["rows"] if r["method"] == name)


def test_baselines_by_hand(records):
    # gpt4_pref is 0.2, 0.4, 0.6, 0.8 for m0..m3 (0.95 for m0 in example 3); the longest is m3.
    best = best_model_on(records, "gpt4_pref")
    assert best == "m3"
    table = ranking_table(records, "gpt4_pref", best, baseline_methods(records, "gpt4_pref"), n_boot=200)
    random = row(table, "Random (expected)")
    assert random["top1_oracle"] == pytest.approx((3 * 0.5 + (0.95 + 0.4 + 0.6 + 0.8) / 4) / 4)
    assert random["gpt_rank"] == pytest.approx(2.5)
    assert random["top1_pct"] == pytest.approx(25.0) and random["top3_pct"] == pytest.approx(75.0)
    m3 = row(table, "model: m3")
    assert m3["top1_oracle"] == pytest.approx(0.8)
    assert m3["gpt_rank"] == pytest.approx((1 + 1 + 1 + 2) / 4)
    assert m3["top1_pct"] == 75.0 and m3["ge_best_pct"] == 100.0
    longest = row(table, "Longest")
    assert longest["top1_oracle"] == pytest.approx(0.8)  # m3's text is the longest in every example
    oracle = row(table, "Oracle (gpt4_pref)")
    assert (
        oracle["gpt_rank"] == 1.0 and oracle["top1_pct"] == 100.0 and oracle["spearman"] == pytest.approx(1.0)
    )
    low, high = oracle["top1_oracle_ci"]
    assert low <= oracle["top1_oracle"] <= high


def test_cmp_results_oracle_ranks_like_the_paper(records):
    # Every label says the later model is better: m3 wins all 3 comparisons (score +6).
    np.testing.assert_allclose(oracle_scores(records[0], "cmp_results"), [-6, -2, 2, 6])
    table = ranking_table(records, "cmp_results", "m3", [Method("pick m0", picks=[0] * 4)], n_boot=50)
    assert row(table, "pick m0")["gpt_rank"] == 4.0


def test_ranker_rows_get_paired_differences_and_render(records):
    scores = [np.array([0.0, 1.0, 2.0, 3.0]) for _ in records]
    methods = [
        *baseline_methods(records, "gpt4_pref"),
        Method("R", scores=scores, forward_passes=12, seconds=0.1),
    ]
    table = ranking_table(records, "gpt4_pref", "m3", methods, n_boot=100, compare_to=["Longest"])
    (diff,) = table["differences"]
    assert diff["method"] == "R" and diff["top1_oracle_diff"] == pytest.approx(0.0)
    text = render_markdown(table, "t")
    assert "| R |" in text and "R − Longest: +0.000" in text


def test_missing_oracle_is_a_clear_error(records):
    with pytest.raises(ValueError, match="no score 'bleurt'"):
        oracle_scores(records[0], "bleurt")
    records[0].cmp_results = None
    with pytest.raises(ValueError, match="no cmp_results"):
        oracle_scores(records[0], "cmp_results")


def test_the_report_says_whose_answer_each_method_picks(records):
    # R picks m1 in examples 0-1 and m0 in 2-3; the Oracle picks m3 three times and m0 (0.95) once.
    scores = [np.array([0.0, 1.0, 0.5, 0.2])] * 2 + [np.array([1.0, 0.0, 0.5, 0.2])] * 2
    methods = [*baseline_methods(records, "gpt4_pref"), Method("R", scores=scores, forward_passes=12)]
    table = ranking_table(records, "gpt4_pref", "m3", methods, n_boot=20)
    assert row(table, "R")["picks_by_model"] == {"m1": 2, "m0": 2}
    assert row(table, "Oracle (gpt4_pref)")["picks_by_model"] == {"m3": 3, "m0": 1}
    assert "picks_by_model" not in row(table, "model: m0") and "picks_by_model" not in row(
        table, "Random (expected)"
    )
    # Means: m3 0.8, m2 0.6, m1 0.4, m0 (0.2 * 3 + 0.95) / 4 = 0.3875: the columns run best first.
    assert table["model_means"] == pytest.approx({"m3": 0.8, "m2": 0.6, "m1": 0.4, "m0": 0.3875})
    assert list(table["model_means"]) == ["m3", "m2", "m1", "m0"]
    text = render_markdown(table, "t")
    assert "Whose answer each method picks (of 4; models by their mean gpt4_pref here, best first)" in text
    assert "| Method | m3 (0.800) | m2 (0.600) | m1 (0.400) | m0 (0.388) |" in text
    assert "| R | 0 | 0 | 2 | 2 |" in text and "| Oracle (gpt4_pref) | 3 | 0 | 0 | 1 |" in text


def test_a_model_missing_from_some_records_is_named_not_dropped_silently(caplog):
    records = [parse_record(make_raw_record(i), "t") for i in range(3)]
    raw = make_raw_record(3)
    raw["candidates"] = raw["candidates"][:-1]
    raw["cmp_results"] = None
    records.append(parse_record(raw, "t"))
    with caplog.at_level("WARNING"):
        names = [m.name for m in baseline_methods(records, "gpt4_pref")]
    assert "model: m3" not in names and "model: m2" in names
    assert "model m3 has no candidate in 1 of 4 records (first: test/3)" in caplog.text
