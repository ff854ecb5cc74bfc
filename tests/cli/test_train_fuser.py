"""`make train-fuser` and `make eval fuser_checkpoint=...` on small data: the fused row reaches Table 2."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from blender.cli import evaluate, train_fuser
from blender.evaluation.reporting import FuseSettings
from blender.fuser.fused import decoding_id
from blender.fuser.model import GenFuser
from blender.fuser.topk import RankerNotFoundError
from blender.metrics import ROUGE
from blender.mixinstruct.tiny_models import build_tiny_model
from blender.records import DataSettings
from tests.conftest import compose_config

FAST = [
    "inference.precision=fp32",
    "inference.show_progress=false",
    "tables.metrics=[bleu,rougeL]",
    "metrics.bertscore=null",
    "metrics.rouge1=null",
    "metrics.rouge2=null",
    "eval.bootstrap_samples=50",
]


def smoke_fuser_config(tmp_path, small_dataset, *extra):
    """The smoke fuser on the small data, taking its top-K from the rankers saved under tmp_path/train_ranker."""
    return compose_config(
        "train_fuser",
        [
            "experiment=fuser_smoke",
            f"data.path={small_dataset}",
            f"output_dir={tmp_path / 'run'}",
            f"topk.ranker_runs_dir={tmp_path / 'train_ranker'}",
            f"topk.cache_dir={tmp_path / 'topk'}",
            *FAST,
            *extra,
        ],
    )


def test_train_fuser_then_eval_show_the_fused_row(tmp_path, small_dataset, tiny_ranker, one_thread):
    ranker_dir = tmp_path / "train_ranker" / "r1" / "best"
    tiny_ranker.save(ranker_dir)
    cfg = smoke_fuser_config(tmp_path, small_dataset)
    summary = train_fuser.run(cfg)
    assert summary["global_step"] == 2 and (tmp_path / "run" / "best" / "fuser_config.json").is_file()
    rows = {r["method"]: r for r in summary["eval"]["paper_tables"]["table2"]["rows"]}
    fused = rows["PairRanker (K=3) + GenFuser"]
    # The row is the mean ROUGE-L of the answers it wrote against the references, recomputed here.
    answers = [
        json.loads(line)
        for line in (tmp_path / "run" / "eval" / "fused_alpaca_blend_modern_val.jsonl").open()
    ]
    references = {r.id: r.output for r in DataSettings(path=str(small_dataset)).load("val", 4)}
    by_hand = ROUGE("rougeL", show_progress=False).score(
        [a["fused"] for a in answers], [references[a["id"]] for a in answers]
    )
    assert fused["category"] == "LLM-Blender" and fused["rougeL"] == pytest.approx(
        sum(by_hand) / len(by_hand)
    )
    assert "PairRanker + max_logits" in rows and "Oracle (bleu)" in rows
    assert (
        "PairRanker (K=3) + GenFuser"
        in (tmp_path / "run" / "eval" / "table2_alpaca_blend_modern_val.md").read_text()
    )
    assert (
        len((tmp_path / "run" / "eval" / "fused_alpaca_blend_modern_val.jsonl").read_text().splitlines()) == 4
    )
    # The train split ranked on one order of each pair (the offline default), val on the full matrix.
    orders = {
        f.name.split("_")[-2]: {json.loads(line)["pair_orders"] for line in f.read_text().splitlines()}
        for f in (tmp_path / "topk").glob("*.jsonl")
    }
    assert orders == {"train": {"one"}, "val": {"both"}}
    # The small data carries no reference metrics: train-fuser scored the candidates beside its run.
    assert (tmp_path / "run" / "eval" / "scored_alpaca_blend_modern_val.jsonl").is_file()

    cfg = compose_config(
        "eval",
        [
            f"checkpoint={ranker_dir}",
            f"fuser_checkpoint={tmp_path / 'run' / 'best'}",
            f"data.path={small_dataset}",
            "data.limit_val=4",
            *FAST,
        ],
    )
    table = evaluate.run(cfg)
    again = {r["method"]: r for r in table["fused"]["paper_tables"]["table2"]["rows"]}
    assert again["PairRanker (K=3) + GenFuser"]["rougeL"] == pytest.approx(fused["rougeL"])
    # Same ranker, same top-K, same fuser: make eval read the answers train-fuser wrote instead of generating.
    assert not (ranker_dir.parent / "eval" / "fused_alpaca_blend_modern_val.jsonl").exists()
    # ... and the candidates' scores it wrote instead of scoring them again.
    assert not (ranker_dir.parent / "eval" / "scored_alpaca_blend_modern_val.jsonl").exists()

    # Other decoding, same fuser: the saved answers are not taken for it; the override keeps the rest.
    saved = [
        json.loads(line)
        for line in (tmp_path / "run" / "eval" / "fused_alpaca_blend_modern_val.jsonl").open()
    ]
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={ranker_dir}",
            f"fuser_checkpoint={tmp_path / 'run' / 'best'}",
            f"data.path={small_dataset}",
            "data.limit_val=4",
            "fuse.generation={answer_no_repeat_ngram_size:2}",
            *FAST,
        ],
    )
    evaluate.run(cfg)
    again = [
        json.loads(line)
        for line in (ranker_dir.parent / "eval" / "fused_alpaca_blend_modern_val.jsonl").open()
    ]
    assert len(again) == 4 and {r["decoding"] for r in again} != {r["decoding"] for r in saved}
    fuser = GenFuser.load(tmp_path / "run" / "best")
    overridden = replace(fuser.generation, answer_no_repeat_ngram_size=2)
    assert again[0]["decoding"] == decoding_id(overridden) and saved[0]["decoding"] == decoding_id(
        fuser.generation
    )


def test_a_listwise_rankers_top_k_feeds_the_fuser_and_names_its_rows(tmp_path, small_dataset, one_thread):
    from tests.rankers.test_listwise import listwise

    listwise().save(tmp_path / "train_ranker" / "lw" / "best")
    cfg = smoke_fuser_config(tmp_path, small_dataset)
    summary = train_fuser.run(cfg)
    rows = {r["method"] for r in summary["eval"]["paper_tables"]["table2"]["rows"]}
    assert {"Listwise", "Listwise (K=3) + GenFuser"} <= rows and not any(
        r.startswith("PairRanker") for r in rows
    )
    # N passes per instruction, one complete ranking per record, on train and val alike.
    orders = {
        json.loads(line)["pair_orders"]
        for f in (tmp_path / "topk").glob("*.jsonl")
        for line in f.read_text().splitlines()
    }
    assert orders == {"pointwise"}


def test_an_unknown_decoding_override_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"fuse.generation: unknown setting\(s\) \['beams'\]"):
        FuseSettings(generation={"beams": 4})


def test_random_k_ablation_needs_no_ranker(tmp_path, small_dataset, one_thread):
    cfg = compose_config(
        "train_fuser",
        [
            "experiment=fuser_random_k3",
            "fuser=tiny",
            f"data.path={small_dataset}",
            "data.limit_train=4",
            "data.limit_val=2",
            "trainer.max_steps=1",
            "trainer.mixed_precision=no",
            "trainer.show_progress=false",
            "evaluate_after_training=false",
            f"output_dir={tmp_path / 'run'}",
            f"topk.ranker_runs_dir={tmp_path / 'none'}",
        ],
    )
    assert train_fuser.run(cfg)["global_step"] == 1


def test_no_ranker_tells_how_to_get_one(tmp_path, small_dataset):
    cfg = compose_config(
        "train_fuser",
        [
            "experiment=fuser_smoke",
            f"data.path={small_dataset}",
            f"output_dir={tmp_path}",
            f"topk.ranker_runs_dir={tmp_path / 'none'}",
        ],
    )
    with pytest.raises(RankerNotFoundError, match="make train-ranker"):
        train_fuser.run(cfg)


def test_eval_adds_the_zero_shot_row_beside_the_trained_one(tmp_path, small_dataset, tiny_ranker, one_thread):
    ranker_dir = tmp_path / "train_ranker" / "r1" / "best"
    tiny_ranker.save(ranker_dir)
    cfg = smoke_fuser_config(tmp_path, small_dataset)
    train_fuser.run(cfg)
    # The default fuser config (Gemma 3's prompt, LoRA, stop strings) on a random tiny Gemma 3, never trained.
    base = build_tiny_model(tmp_path / "tiny-gemma3", model_type="gemma3")
    overrides = [
        f"checkpoint={ranker_dir}",
        f"fuser_checkpoint={tmp_path / 'run' / 'best'}",
        "fuse.zero_shot=true",
        f"fuser.name_or_path={base}",
        "fuser.packing.max_source_length=96",
        "fuser.packing.candidate_max_length=16",
        "fuser.packing.max_target_length=8",
        "fuser.generation.max_new_tokens=4",
        "fuser.generation.show_progress=false",
        "fuser.generation.mixed_precision=no",
        f"data.path={small_dataset}",
        "data.limit_val=4",
        *FAST,
    ]
    table = evaluate.run(compose_config("eval", overrides))
    fused = table["fused"]
    assert fused["rows"] == ["PairRanker (K=3) + GenFuser", "PairRanker (K=3) + GenFuser (zero-shot)"]
    rows = {r["method"]: r for r in fused["paper_tables"]["table2"]["rows"]}
    assert rows["PairRanker (K=3) + GenFuser (zero-shot)"]["category"] == "LLM-Blender"
    eval_dir = ranker_dir.parent / "eval"
    zero_shot = [
        json.loads(line)
        for line in (eval_dir / "fused_zero_shot_alpaca_blend_modern_val.jsonl").read_text().splitlines()
    ]
    assert len(zero_shot) == 4 and zero_shot[0]["fuser_checkpoint"].startswith(f"zero-shot:{base}:")
    differences = json.loads((eval_dir / "fused_difference_alpaca_blend_modern_val.json").read_text())
    assert set(differences["metrics"]) == {"bleu", "rougeL"}
    bleu = differences["metrics"]["bleu"]
    assert bleu["difference"] == pytest.approx(bleu["first"] - bleu["second"])
    assert bleu["first"] == pytest.approx(rows["PairRanker (K=3) + GenFuser"]["bleu"])
    quality = json.loads((eval_dir / "fused_quality_alpaca_blend_modern_val.json").read_text())
    assert set(quality) == set(fused["rows"]) and quality[fused["rows"][1]]["n_answers"] == 4
    # Run again: both answer sets are read back, nothing is generated.
    mtime = (eval_dir / "fused_zero_shot_alpaca_blend_modern_val.jsonl").stat().st_mtime_ns
    evaluate.run(compose_config("eval", overrides))
    assert (eval_dir / "fused_zero_shot_alpaca_blend_modern_val.jsonl").stat().st_mtime_ns == mtime
