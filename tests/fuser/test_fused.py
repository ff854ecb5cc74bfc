"""Fused answers in Table 2: reference metrics, and a judge's placement among the candidates."""

from __future__ import annotations

import numpy as np

from blender.evaluation.paper_tables import table2, table2_methods
from blender.fuser.fused import FusedAnswers, judge_fused, place_fused
from blender.records.schema import parse_record
from tests.conftest import make_raw_record


class LengthMetric:
    """Scores a text by its word count (stands in for BLEU)."""

    def score(self, texts, references):
        return [float(len(t.split())) for t in texts]


class FusedWinsOddJudge:
    """The fused answer beats candidates m1 and m3, ties m0 and loses to m2."""

    def __init__(self):
        self.asked = []

    def judge_records(self, records):
        self.asked += records
        labels = {"m0": "Same good", "m1": "A is better", "m2": "B is better", "m3": "A is better"}
        return [{f"genfuser,{r.candidates[1].model}": labels[r.candidates[1].model]} for r in records]


def records(n=3):
    raw = [make_raw_record(k) for k in range(n)]
    for record in raw:
        for candidate in record["candidates"]:
            candidate["scores"]["bleu"] = float(len(candidate["text"].split()))
    return [parse_record(r, where=f"test:{k}") for k, r in enumerate(raw)]


def test_place_fused_counts_strictly_better_candidates():
    assert place_fused(["A is better", "B is better", "Same good"]) == 2
    assert place_fused(["Same bad", "A is better"]) == 1


def test_judge_fused_asks_one_pair_per_candidate():
    judge = FusedWinsOddJudge()
    recs = records(2)
    assert judge_fused(recs, ["x", "y"], judge) == [2, 2]
    assert len(judge.asked) == 8 and judge.asked[0].candidates[0].text == "x"


def test_fused_row_in_table2_with_metrics_and_gpt_rank():
    recs = records(3)
    fused = FusedAnswers(
        "PairRanker (K=3) + GenFuser", ["one two", "one two three", "one"], gpt_ranks=[1, 2, 5]
    )
    attached = fused.attach(recs, {"bleu": LengthMetric()})
    table = table2(
        attached,
        "gpt4_pref",
        table2_methods(attached, "gpt4_pref", ["bleu"]),
        ["bleu"],
        [],
        n_boot=50,
        extra_outputs={fused.row_name: "fused"},
    )
    row = table["rows"][-1]
    assert row["method"] == fused.row_name and row["category"] == "LLM-Blender"
    assert row["bleu"] == 2.0
    assert row["gpt_rank"] == np.mean([1, 2, 5]) and row["top1_pct"] == 100 / 3 and row["top3_pct"] == 200 / 3
