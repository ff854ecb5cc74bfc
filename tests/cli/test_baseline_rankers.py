"""The train entry with ranker=summareranker|listwise|simcls|mlm_scoring on small data, `make eval` on their checkpoints,
and the comparison that gathers experiments (`make eval` with no checkpoint)."""

import numpy as np
import pytest
from omegaconf import open_dict

from blender.cli import compare, evaluate, train_ranker
from blender.rankers import load_ranker
from blender.rankers.saved_scores import load_candidate_scores
from blender.records import DataSettings
from tests.conftest import compose_config, make_raw_record, write_jsonl


def smoke(tmp_path, data_dir, ranker, *extra):
    return compose_config(
        "train_ranker",
        [
            "experiment=smoke",
            f"ranker={ranker}",
            f"data.path={data_dir}",
            f"output_dir={tmp_path / ranker}",
            *extra,
        ],
    )


@pytest.mark.parametrize("ranker", ["summareranker", "listwise", "simcls", "mlm_scoring"])
def test_each_ranker_trains_or_scores_and_evaluates(ranker, tmp_path, small_dataset):
    summary = train_ranker.run(smoke(tmp_path, small_dataset, ranker))
    label = {
        "summareranker": "SummaReranker",
        "listwise": "Listwise",
        "simcls": "SimCLS",
        "mlm_scoring": "MLM-Scoring",
    }[ranker]
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    assert summary["global_step"] == (0 if ranker == "mlm_scoring" else 2)
    # Passes per instruction: N candidates for SummaReranker and the listwise ranker, N + the source for SimCLS, one per scored token
    # (each candidate's first 32) for MLM-Scoring.
    best = load_ranker(tmp_path / ranker / "best")
    val = DataSettings(path=str(small_dataset)).load("val", 4)
    expected = {"summareranker": 4, "listwise": 4, "simcls": 5}.get(ranker) or np.mean(
        [best.forward_passes(r) for r in val]
    )
    assert rows[label]["forward_passes"] == pytest.approx(expected)
    assert {"pearson_ci", "spearman_ci", "footrule_ci"} <= set(rows[label])
    _, _, scores = load_candidate_scores(
        tmp_path / ranker / "eval" / "candidate_scores_alpaca_blend_modern_val.npz"
    )
    assert [len(s) for s in scores] == [4] * 4
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={tmp_path / ranker / 'best'}",
            f"data.path={small_dataset}",
            "data.limit_val=4",
            "inference.show_progress=false",
            "eval.bootstrap_samples=100",
            "inference.precision=fp32",
        ],
    )
    again = {r["method"]: r for r in evaluate.run(cfg)["rows"]}
    assert again[label]["top1_oracle"] == pytest.approx(rows[label]["top1_oracle"])


def test_multi_signal_training_with_per_signal_thresholds(tmp_path, small_dataset):
    summary = train_ranker.run(
        smoke(
            tmp_path,
            small_dataset,
            "pairranker",
            "data.signals=[gpt4_pref,other]",
            "data.min_delta={gpt4_pref: 0.1, default: 0.0}",
            "evaluate_after_training=false",
        )
    )
    assert np.isfinite(summary["train/loss"])
    with pytest.raises(ValueError, match=r"min_delta has no entry for signal\(s\) \['other'\]"):
        train_ranker.run(
            smoke(
                tmp_path,
                small_dataset,
                "summareranker",
                "data.signals=[gpt4_pref,other]",
                "data.min_delta={gpt4_pref: 0.1}",
            )
        )


def test_compare_gathers_experiments_into_one_table(tmp_path, small_dataset):
    experiments = tmp_path / "experiments"
    train_ranker.run(smoke(tmp_path, small_dataset, "pairranker", f"output_dir={experiments / 'pr'}"))
    train_ranker.run(smoke(tmp_path, small_dataset, "simcls", f"output_dir={experiments / 'sc'}"))
    # The scored val split: the same 4 records, with a reference metric added.
    rows = [make_raw_record(100 + i) for i in range(4)]
    for row in rows:
        for k, candidate in enumerate(row["candidates"]):
            candidate["scores"]["bleu"] = float(10 * k)
    write_jsonl(tmp_path / "scores" / "val.jsonl", rows)
    dataset = {
        "split": "val",
        "oracle": "gpt4_pref",
        "scored_path": str(tmp_path / "scores"),
        "train_path": str(small_dataset),
        "experiments": {"sc": "SimCLS (gpt4_pref)", "pr": "PairRanker (gpt4_pref)", "none": "Not run"},
    }
    cfg = compose_config(
        "compare",
        [f"experiments_dir={experiments}", f"output_dir={tmp_path / 'out'}", "bootstrap_samples=50"],
    )
    with open_dict(cfg):
        cfg.datasets = {"alpaca_blend_modern": dataset}
    result = compare.run(cfg)["alpaca_blend_modern"]
    names = [r["method"] for r in result["table"]["rows"]]
    assert names[:3] == ["Random (expected)", "Longest", "model: m3"]
    assert {
        "Oracle (bleu)",
        "Oracle (gpt4_pref)",
        "SimCLS (gpt4_pref)",
        "PairRanker (gpt4_pref) + max_logits",
        "PairRanker (gpt4_pref) + bubble",
    } <= set(names)
    assert result["missing"] == ["none"]
    markdown = (tmp_path / "out" / "comparison_alpaca_blend_modern_val.md").read_text()
    assert "Not run yet" in markdown and "Oracle (BLEU)" in markdown
    assert (tmp_path / "out" / "table2_alpaca_blend_modern_val.md").is_file()
    assert (tmp_path / "out" / "table3_alpaca_blend_modern_val.md").is_file()
