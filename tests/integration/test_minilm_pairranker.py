"""The real packaged MiniLM on a slice of ../shared/data/alpaca_blend: train a few steps, rank, evaluate."""

import numpy as np
import pytest

from blender.api import Blender
from blender.cli import train_ranker
from blender.rankers import InferenceSettings, PairRanker, full_matrices
from blender.rankers.saved_scores import load_pair_logits
from blender.records import Candidate, Record, load_candidates
from tests.conftest import SHARED, compose_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = SHARED / "data" / "alpaca_blend"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not DATA.is_dir():
        pytest.fail(f"{DATA} is missing: the integration tests need ../shared beside the repo")
    out = tmp_path_factory.mktemp("minilm_run")
    cfg = compose_config(
        "train_ranker",
        [
            "ranker=pairranker",  # the paper's kind (the default is the listwise ranker: test_minilm_baselines)
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
            "inference.precision=fp32",
            "eval.bootstrap_samples=100",
        ],
    )
    return out, train_ranker.run(cfg)


def oracle_rank(values: np.ndarray, pick: int) -> int:
    """1 + how many candidates the oracle puts strictly above the pick (ties share the better rank)."""
    return 1 + int((values > values[pick]).sum())


def test_trains_and_evaluates_end_to_end(trained):
    out, summary = trained
    assert summary["global_step"] == 8 and np.isfinite(summary["train/loss"])
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    assert len([m for m in rows if m.startswith("model: ")]) == 11
    ranker_row = rows["PairRanker + max_logits"]
    assert ranker_row["forward_passes"] == 110
    # The row's figures, recomputed by hand from the matrices the evaluation saved: MaxLogits picks the row of
    # the largest Σ_j (M[i, j] − M[j, i]); its GPT-Rank is where the judge ranks that pick.
    saved = load_pair_logits(out / "eval" / "pair_logits_alpaca_blend_val.npz")
    (val,) = load_candidates(DATA, splits=("val",), limit=3)
    assert saved.ids == [r.id for r in val]
    picks = [int(np.argmax((m - m.T).sum(axis=1))) for m in saved.matrices]
    judged = [np.array([c.scores["gpt4_pref"] for c in r.candidates]) for r in val]
    assert ranker_row["gpt_rank"] == pytest.approx(
        np.mean([oracle_rank(v, p) for v, p in zip(judged, picks, strict=True)])
    )
    assert ranker_row["top1_oracle"] == pytest.approx(
        np.mean([v[p] for v, p in zip(judged, picks, strict=True)])
    )
    assert (out / "eval" / "ranking_alpaca_blend_val.md").is_file()


def test_checkpoint_ranks_through_the_python_api(trained):
    out, _ = trained
    inference = InferenceSettings(show_progress=False, precision="fp32")
    blender = Blender.from_pretrained(out / "best", inference=inference)
    instructions, candidates = (
        ["Name a prime number.", "Say hi."],
        [["7", "4", "Nine is prime."], ["hi", "hello there"]],
    )
    ranks = blender.rank(instructions, candidates)
    # The ranks are the competition ranks of the MaxLogits scores of the full matrix, worked out here by hand.
    records = [
        Record(str(k), i, "", "", [Candidate(f"c{j}", t) for j, t in enumerate(texts)])
        for k, (i, texts) in enumerate(zip(instructions, candidates, strict=True))
    ]
    for matrix, got in zip(full_matrices(blender.ranker, records, inference), ranks, strict=True):
        scores = (matrix - matrix.T).sum(axis=1)
        assert got == [1 + int((scores > s).sum()) for s in scores]
    margin = blender.compare("Name a prime number.", "7", "4", return_logits=True)
    assert margin == pytest.approx(
        -blender.compare("Name a prime number.", "4", "7", return_logits=True), abs=1e-5
    )
    best = blender.rank(["Name a prime number."], [["7", "4", "Nine is prime."]], aggregation="bubble")[0]
    assert best.count(1) == 1


def test_real_minilm_scores_do_not_depend_on_batch_size(trained):
    out, _ = trained
    ranker = PairRanker.load(out / "best")
    (val,) = load_candidates(DATA, splits=("val",), limit=2)
    one = full_matrices(
        ranker, val, InferenceSettings(precision="fp32", max_batch_size=1, show_progress=False)
    )
    many = full_matrices(
        ranker, val, InferenceSettings(precision="fp32", max_batch_size=32, show_progress=False)
    )
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
