"""The real packaged MiniLM on a slice of ../shared/data/alpaca_blend: a short training run of SummaReranker and
SimCLS, and MLM-Scoring (MiniLM has no MLM head, so the tied-embedding fallback), each evaluated end to end."""

import numpy as np
import pytest

from blender.api import Blender
from blender.cli import train_ranker
from blender.rankers import InferenceSettings, MLMScorer, load_ranker
from blender.rankers.saved_scores import load_candidate_scores
from blender.records import Candidate, Record, load_candidates
from tests.conftest import SHARED, compose_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = SHARED / "data" / "alpaca_blend"
LABELS = {
    "summareranker": "SummaReranker",
    "listwise": "Listwise",
    "simcls": "SimCLS",
    "mlm_scoring": "MLM-Scoring",
}


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
            "inference.precision=fp32",
            "eval.bootstrap_samples=100",
            *extra,
        ],
    )
    return train_ranker.run(cfg)


@pytest.mark.parametrize("ranker", ["summareranker", "listwise", "simcls"])
def test_short_training_run_on_minilm(ranker, tmp_path):
    summary = run(ranker, tmp_path)
    # SummaReranker: 16 instructions x 2 candidates in batches of 4 sequences; the listwise ranker (the default
    # kind): one instruction of 11 candidates a batch; SimCLS: 16 in batches of 4.
    assert summary["global_step"] == {"summareranker": 8, "listwise": 16, "simcls": 4}[ranker]
    assert np.isfinite(summary["train/loss"]) and summary["best_epoch"] == 0
    rows = {r["method"]: r for r in summary["eval"]["rows"]}
    row = rows[LABELS[ranker]]
    assert row["forward_passes"] == {"summareranker": 11, "listwise": 11, "simcls": 12}[ranker]
    # GPT-Rank recomputed by hand from the scores the evaluation saved: where the judge ranks each pick.
    _, _, saved_scores = load_candidate_scores(tmp_path / "eval" / "candidate_scores_alpaca_blend_val.npz")
    (val,) = load_candidates(DATA, splits=("val",), limit=3)
    judged = [np.array([c.scores["gpt4_pref"] for c in r.candidates]) for r in val]
    ranks_of_picks = [
        1 + int((v > v[int(np.argmax(s))]).sum()) for v, s in zip(judged, saved_scores, strict=True)
    ]
    assert row["gpt_rank"] == pytest.approx(np.mean(ranks_of_picks))
    inference = InferenceSettings(show_progress=False, precision="fp32")
    blender = Blender.from_pretrained(tmp_path / "best", inference=inference)
    ranks = blender.rank(["Name a prime number."], [["7", "4", "Nine is prime."]])[0]
    record = Record(
        "0",
        "Name a prime number.",
        "",
        "",
        [Candidate(f"c{j}", t) for j, t in enumerate(["7", "4", "Nine is prime."])],
    )
    (scores,) = blender.ranker.score_records([record], inference)
    assert ranks == [1 + int((scores > s).sum()) for s in scores]
    assert blender.compare("Name a prime number.", "7", "4", return_logits=True) == pytest.approx(
        -blender.compare("Name a prime number.", "4", "7", return_logits=True), abs=1e-4
    )


def test_mlm_scoring_on_minilm_uses_the_tied_fallback(tmp_path):
    summary = run("mlm_scoring", tmp_path, "ranker.candidate_max_length=12")
    assert summary["global_step"] == 0
    scorer = load_ranker(tmp_path / "best")
    assert isinstance(scorer, MLMScorer) and scorer.head == "tied"
    row = {r["method"]: r for r in summary["eval"]["rows"]}["MLM-Scoring"]
    # One pass per scored token: each candidate's first 12 tokens (fewer when it is shorter).
    (val,) = load_candidates(DATA, splits=("val",), limit=3)
    tokens = [
        min(
            12,
            len(scorer.tokenizer(c.text, add_special_tokens=False, split_special_tokens=True)["input_ids"]),
        )
        for r in val
        for c in r.candidates
    ]
    assert row["forward_passes"] == pytest.approx(sum(tokens) / len(val))
    # A PLL is a sum of log-probabilities: negative.
    _, _, saved_scores = load_candidate_scores(tmp_path / "eval" / "candidate_scores_alpaca_blend_val.npz")
    assert all((s < 0).all() for s in saved_scores)
