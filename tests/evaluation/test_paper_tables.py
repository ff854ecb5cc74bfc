"""Table 2 / Table 3 on a hand-checked fixture; the paper's numbers load and show on MixInstruct only; PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender.evaluation import (
    Method,
    available_metrics,
    paper_results,
    render_table2,
    render_table3,
    report_paper_tables,
    table2,
    table2_methods,
    table3,
)
from blender.evaluation.paper_tables import best_shares, named_models_for
from blender.evaluation.reporting import EvalSettings, ReportSettings, report_split_tables
from blender.records import DataSettings, parse_record
from tests.conftest import write_jsonl

# Per record: model -> (gpt4_pref, bleu, bertscore, text). d is always last by gpt4_pref.
FIXTURE = [
    {
        "a": (0.9, 10, 0.8, "x"),
        "b": (0.5, 20, 0.7, "x x"),
        "c": (0.1, 30, 0.6, "x x x x"),
        "d": (0.0, 1, 0.1, "x"),
    },
    {
        "a": (0.2, 5, 0.9, "x x x x"),
        "b": (0.8, 15, 0.5, "x"),
        "c": (0.5, 25, 0.4, "x x"),
        "d": (0.0, 1, 0.1, "x"),
    },
    {
        "a": (0.6, 40, 0.6, "x"),
        "b": (0.6, 10, 0.5, "x x x x"),
        "c": (0.3, 0, 0.9, "x"),
        "d": (0.0, 1, 0.1, "x"),
    },
]


def make_records(fixture=FIXTURE, names=None):
    rows = []
    for i, models in enumerate(fixture):
        candidates = [
            {
                "model": (names or {}).get(m, m),
                "text": text,
                "scores": {"gpt4_pref": pref, "bleu": float(bleu), "bertscore": bert},
            }
            for m, (pref, bleu, bert, text) in models.items()
        ]
        rows.append(
            {"id": f"t/{i}", "instruction": "q", "input": "", "output": "ref", "candidates": candidates}
        )
    return [parse_record(r, "fixture") for r in rows]


def by_name(table):
    return {r["method"]: r for r in table["rows"]}


def test_table2_by_hand():
    records = make_records()
    metrics = available_metrics(records)
    assert metrics == ["bertscore", "bleu"]  # in the paper's column order; gpt4_pref is no reference metric
    named = named_models_for(records, "gpt4_pref", "alpaca_blend_modern")
    assert named == ["b", "a"]  # best two by mean gpt4_pref: b 0.633, a 0.567
    table = table2(
        records, "gpt4_pref", table2_methods(records, "gpt4_pref", metrics), metrics, named, n_boot=200
    )
    rows = by_name(table)
    assert [r["method"] for r in table["rows"][:4]] == ["b", "a", "c", "d"]
    # oracle ranks: record 0 a1 b2 c3 d4; record 1 b1 c2 a3 d4; record 2 a1 b1 (tie) c3 d4.
    a = rows["a"]
    assert a["gpt_rank"] == pytest.approx(5 / 3) and a["bleu"] == pytest.approx(55 / 3)
    assert a["bertscore"] == pytest.approx(2.3 / 3) and a["top1_pct"] == pytest.approx(200 / 3)
    assert a["ge:b"] == pytest.approx(200 / 3)  # 0.9 ≥ 0.5, 0.2 < 0.8, 0.6 ≥ 0.6 (a tie counts)
    assert a["ge:a"] is None  # a model against itself is N/A, as printed in the paper
    assert rows["c"]["ge:a"] == pytest.approx(100 / 3) and rows["d"]["top3_pct"] == 0.0
    random = rows["Random"]
    assert random["gpt_rank"] == pytest.approx((2.5 + 2.5 + 2.25) / 3)
    assert random["top3_pct"] == pytest.approx(75.0) and random["ge:b"] == pytest.approx(500 / 12)
    assert rows["Oracle (bleu)"]["bleu"] == pytest.approx(95 / 3) and rows["Oracle (bleu)"]["gpt_rank"] == 2.0
    oracle = rows["Oracle (gpt4_pref)"]
    assert oracle["gpt_rank"] == 1.0 and oracle["ge:a"] == oracle["ge:b"] == oracle["top3_pct"] == 100.0
    assert oracle["bleu"] == pytest.approx((10 + 15 + 40) / 3)  # ties go to the first candidate
    assert rows["Longest"]["gpt_rank"] == pytest.approx((3 + 3 + 1) / 3)  # picks c, a, b
    low, high = a["gpt_rank_ci"]
    assert low <= a["gpt_rank"] <= high
    assert table["best_share_pct"] == pytest.approx({"a": 200 / 3, "b": 200 / 3, "c": 0.0, "d": 0.0})


def test_table3_by_hand():
    records = make_records()
    ranker = Method(
        "PairRanker + max_logits",
        scores=[np.array([c.scores["gpt4_pref"] for c in r.candidates]) for r in records],
    )
    table = table3(records, "gpt4_pref", ["bleu"], [ranker])
    rows = by_name(table)
    # BLEU's rank columns a [3,3,1], b [2,2,2], c [1,1,4], d [4,4,3] against the oracle's a [1,3,1], b [2,1,1],
    # c [3,2,3], d [4,4,4]: b and d are constant (left out); a and c both correlate 0.5.
    bleu = rows["bleu"]
    assert bleu["pearson"] == pytest.approx(0.5) and bleu["spearman"] == pytest.approx(0.5)
    assert bleu["footrule"] == pytest.approx((4 + 2 + 3) / 3)
    assert bleu["spearman_within"] == pytest.approx((0.2 + 0.8 + 3.5 / np.sqrt(22.5)) / 3)
    assert rows["PairRanker + max_logits"]["footrule"] == 0.0
    assert rows["Random"]["draws"] == 20 and abs(rows["Random"]["spearman_within"]) < 0.5


def test_paper_numbers_are_stored_once_with_their_source():
    paper = paper_results()
    assert "ACL 2023" in paper["table2"]["source"] and "Table 3" in paper["table3"]["source"]
    t2 = {r["method"]: r for r in paper["table2"]["rows"]}
    assert t2["PairRanker"]["gpt_rank"] == 3.20 and t2["PR (K = 3) + GF"]["bertscore"] == 79.09
    assert t2["Vicuna"]["ge_vicuna_pct"] is None and t2["Vicuna"]["ge_open_assistant_pct"] == 64.77
    assert len(t2) == 21 and len(paper["table3"]["rows"]) == 10
    assert {r["method"]: r["pearson"] for r in paper["table3"]["rows"]}["PairRanker"] == 46.98
    assert sum(paper["figure1"]["share_best_pct"].values()) == pytest.approx(100.0, abs=0.1)
    assert len(paper["models"]) == 11


def mixinstruct_like():
    names = {
        "a": "vicuna-13b-1.1",
        "b": "oasst-sft-4-pythia-12b-epoch-3.5",
        "c": "alpaca-native",
        "d": "flan-t5-xxl",
    }
    return make_records(names=names)


def test_paper_rows_appear_beside_ours_on_mixinstruct_only(tmp_path):
    records = mixinstruct_like()
    named = named_models_for(records, "gpt4_pref", "mixinstruct")
    assert named == ["vicuna-13b-1.1", "oasst-sft-4-pythia-12b-epoch-3.5"]  # the paper's ≥ Vic, ≥ OA
    report = report_paper_tables(
        records, "gpt4_pref", named, tmp_path, "mixinstruct_test", "fixture", dataset="mixinstruct", n_boot=50
    )
    markdown = (tmp_path / "table2_mixinstruct_test.md").read_text()
    label = paper_results()["label"]
    assert label in markdown and "LLM-Blender (Jiang et al., ACL 2023), Table 2" in markdown
    lines = markdown.splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith("| LLMs | vicuna-13b-1.1 |"))
    # Right under our Vicuna row: the paper's, BERTScore ×100, ≥ Vic N/A, ≥ OA 64.77, Top-3 52.88.
    assert lines[ours + 1] == "| ↳ paper | *Vicuna* | 69.60 | – | 4.13 | – | 64.77 | 52.88 | – |"
    assert "*PR (K = 3) + GF*" in markdown and "*Oracle (BERTScore)*" in markdown
    table3_md = (tmp_path / "table3_mixinstruct_test.md").read_text()
    bleu_row = next(i for i, line in enumerate(table3_md.splitlines()) if "| BLEU |" in line)
    assert table3_md.splitlines()[bleu_row + 1] == "| ↳ paper | *BLEU* | 28.70 | 26.92 | 33.57 | – |"
    data = json.loads((tmp_path / "table3_mixinstruct_test.json").read_text())
    assert data["paper"]["label"] == label and data["rows"][0]["method"] == "Random"
    for stem in ("best_share", "correlations"):
        assert (tmp_path / f"{stem}_mixinstruct_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report["files"]) == 6

    # The same tables on any other dataset: no paper rows.
    other = report_paper_tables(
        records, "gpt4_pref", named, tmp_path, "other", "fixture", dataset="alpaca_blend"
    )
    assert "paper" not in (tmp_path / "table2_other.md").read_text()
    assert "↳" not in render_table3(other["table3"], "t") and "↳" not in render_table2(other["table2"], "t")


def test_eval_writes_the_tables_from_a_scored_folder(tmp_path):
    records = make_records()
    data_dir, scores_dir = tmp_path / "data", tmp_path / "scores"
    unscored = [r.to_dict() for r in records]
    for row in unscored:
        for candidate in row["candidates"]:
            candidate["scores"] = {"gpt4_pref": candidate["scores"]["gpt4_pref"]}
    write_jsonl(data_dir / "train.jsonl", unscored)
    write_jsonl(data_dir / "val.jsonl", unscored)
    write_jsonl(scores_dir / "val.jsonl", [r.to_dict() for r in records])
    data = DataSettings(path=str(data_dir))
    report_settings = ReportSettings(evaluation=EvalSettings(bootstrap_samples=50))
    plain = [parse_record(r, "x") for r in unscored]
    ranker = Method("PairRanker + max_logits", scores=[np.arange(4.0)[::-1] for _ in records])

    def tables() -> dict | None:
        return report_split_tables(
            plain, [ranker], "t", None, data, "val", tmp_path / "eval", report_settings
        )

    assert tables() is None  # no metrics on the eval split
    report_settings.tables.scores_path = str(scores_dir)
    report = tables()
    assert report["metrics"] == ["bertscore", "bleu"] and report["table2"]["named_models"] == ["b", "a"]
    assert by_name(report["table3"])["PairRanker + max_logits"]["footrule"] == pytest.approx((0 + 4 + 1) / 3)
    assert (tmp_path / "eval" / "table3_alpaca_blend_modern_val.md").is_file()
    write_jsonl(scores_dir / "val.jsonl", [r.to_dict() for r in records[:2]])
    with pytest.raises(Exception, match="not the eval split's"):
        tables()


def test_best_shares_count_ties_for_each():
    assert best_shares(make_records(), "gpt4_pref")["b"] == pytest.approx(200 / 3)
