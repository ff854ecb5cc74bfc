"""The real packaged MiniLM on a slice of ../shared/data/alpaca_blend: train a few steps, rank, evaluate."""

import numpy as np
import pytest

from blender.api import Blender
from blender.cli import train_ranker
from blender.rankers import InferenceSettings, PairRanker, full_matrices
from tests.conftest import SHARED, compose_config

pytestmark = pytest.mark.integration
DATA = SHARED / "data" / "alpaca_blend"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not DATA.is_dir():
        pytest.fail(f"{DATA} is missing: the integration tests need ../shared beside the repo")
    out = tmp_path_factory.mktemp("minilm_run")
    cfg = compose_config(
        "train_ranker",
        [
            "data=alpaca_blend",
            f"data.path={DATA}",
            "data.limit_train=16",
            "data.limit_val=3",
            f"output_dir={out}",
            "ranker.source_max_length=48",
            "ranker.candidate_max_length=48",
            "ranker.sampling.pairs_per_example=2",
            "trainer.epochs=1",
            "trainer.batch_size=4",
            "trainer.show_progress=false",
            "trainer.mixed_precision=no",
            "inference.show_progress=false",
            "inference.mixed_precision=no",
            "eval.bootstrap_samples=100",
        ],
    )
    return out, train_ranker.run(cfg)


def test_trains_and_evaluates_end_to_end(trained):
    out, summary = trained
    assert summary["global_step"] == 8 and np.isfinite(summary["train/loss"])
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    assert len([m for m in rows if m.startswith("model: ")]) == 11
    ranker_row = rows["PairRanker + max_logits"]
    assert ranker_row["forward_passes"] == 110 and 1.0 <= ranker_row["gpt_rank"] <= 11.0
    assert (out / "eval" / "ranking_alpaca_blend_val.md").is_file()


def test_checkpoint_ranks_through_the_python_api(trained):
    out, _ = trained
    blender = Blender.from_pretrained(out / "best", inference=InferenceSettings(show_progress=False))
    ranks = blender.rank(
        ["Name a prime number.", "Say hi."], [["7", "4", "Nine is prime."], ["hi", "hello there"]]
    )
    assert sorted(ranks[0]) in ([1, 2, 3], [1, 1, 3], [1, 2, 2], [1, 1, 1]) and len(ranks[1]) == 2
    margin = blender.compare("Name a prime number.", "7", "4")
    assert margin == pytest.approx(-blender.compare("Name a prime number.", "4", "7"), abs=1e-5)
    best = blender.rank(["Name a prime number."], [["7", "4", "Nine is prime."]], aggregation="bubble")[0]
    assert best.count(1) == 1


def test_real_minilm_scores_do_not_depend_on_batch_size(trained):
    out, _ = trained
    from blender.data import load_candidates

    ranker = PairRanker.load(out / "best")
    (val,) = load_candidates(DATA, splits=("val",), limit=2)
    one = full_matrices(ranker, val, InferenceSettings(max_batch_size=1, show_progress=False))
    many = full_matrices(ranker, val, InferenceSettings(max_batch_size=32, show_progress=False))
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
