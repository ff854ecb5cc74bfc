"""The real packaged MiniLM on a slice of ../shared/data/alpaca_blend: a short training run of SummaReranker and
SimCLS, and MLM-Scoring (MiniLM has no MLM head, so the tied-embedding fallback), each evaluated end to end."""

import numpy as np
import pytest

from blender.api import Blender
from blender.cli import train_ranker
from blender.rankers import InferenceSettings, MLMScorer, load_ranker
from tests.conftest import SHARED, compose_config

pytestmark = pytest.mark.integration
DATA = SHARED / "data" / "alpaca_blend"
LABELS = {"summareranker": "SummaReranker", "simcls": "SimCLS", "mlm_scoring": "MLM-Scoring"}


def run(ranker: str, out, *extra):
    if not DATA.is_dir():
        pytest.fail(f"{DATA} is missing: the integration tests need ../shared beside the repo")
    cfg = compose_config(
        "train_ranker",
        [
            "data=alpaca_blend",
            f"data.path={DATA}",
            "data.limit_train=16",
            "data.limit_val=3",
            f"output_dir={out}",
            f"ranker={ranker}",
            "ranker.source_max_length=48",
            "ranker.candidate_max_length=48",
            "trainer.epochs=1",
            "trainer.batch_size=4",
            "trainer.show_progress=false",
            "trainer.mixed_precision=no",
            "inference.show_progress=false",
            "inference.mixed_precision=no",
            "eval.bootstrap_samples=100",
            *extra,
        ],
    )
    return train_ranker.run(cfg)


@pytest.mark.parametrize("ranker", ["summareranker", "simcls"])
def test_short_training_run_on_minilm(ranker, tmp_path):
    summary = run(ranker, tmp_path)
    # SummaReranker: 16 instructions x 2 candidates in batches of 4 sequences; SimCLS: 16 in batches of 4.
    assert summary["global_step"] == {"summareranker": 8, "simcls": 4}[ranker]
    assert np.isfinite(summary["train/loss"]) and summary["best_epoch"] == 0
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    row = rows[LABELS[ranker]]
    assert (
        row["forward_passes"] == {"summareranker": 11, "simcls": 12}[ranker]
        and 1.0 <= row["gpt_rank"] <= 11.0
    )
    blender = Blender.from_pretrained(tmp_path / "best", inference=InferenceSettings(show_progress=False))
    ranks = blender.rank(["Name a prime number."], [["7", "4", "Nine is prime."]])[0]
    assert sorted(ranks)[0] == 1 and len(ranks) == 3
    assert blender.compare("Name a prime number.", "7", "4") == pytest.approx(
        -blender.compare("Name a prime number.", "4", "7"), abs=1e-4
    )


def test_mlm_scoring_on_minilm_uses_the_tied_fallback(tmp_path):
    summary = run("mlm_scoring", tmp_path, "ranker.candidate_max_length=12")
    assert summary["global_step"] == 0
    scorer = load_ranker(tmp_path / "best")
    assert isinstance(scorer, MLMScorer) and scorer.head == "tied"
    row = {r["method"]: r for r in summary["eval"]["rows"]}["MLM-Scoring"]
    assert 11 <= row["forward_passes"] <= 11 * 12  # one pass per scored token, at most 12 per candidate
    # A PLL is a sum of log-probabilities: negative.
    saved = np.load(tmp_path / "eval" / "candidate_scores_alpaca_blend_val.npz")
    assert (saved["scores"] < 0).all()
