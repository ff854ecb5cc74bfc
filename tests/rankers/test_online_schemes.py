import numpy as np
import pytest

import blender.rankers.predict as predict
from blender.rankers.predict import InferenceSettings, full_matrices, scheme_scores_online
from blender.ranking_schemes import SCHEMES, replay_scheme
from blender.records import parse_record
from tests.conftest import make_raw_record

QUIET = InferenceSettings(show_progress=False)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_online_scheme_runs_only_its_passes_and_matches_the_replay(tiny_ranker, monkeypatch, scheme):
    records = [parse_record(make_raw_record(i, n_candidates=6), "t") for i in range(4)]
    matrices = full_matrices(tiny_ranker, records, QUIET)
    budget = 30 if scheme == "full" else 20  # 6 candidates: the full matrix is 30 passes
    run = []
    score_pairs = predict.score_pairs

    def counting(ranker, encoded, triples, settings=None, description="pairs"):
        run.extend(triples)
        return score_pairs(ranker, encoded, triples, settings, description)

    monkeypatch.setattr(predict, "score_pairs", counting)
    online = scheme_scores_online(tiny_ranker, records, scheme, budget, settings=QUIET, seed=3)
    replayed = replay_scheme(matrices, scheme, budget, seed=3)
    assert online.passes == replayed.passes
    assert len(run) == sum(online.passes) and len(set(run)) == len(run)
    assert all(p <= budget for p in online.passes)
    for a, b in zip(online.scores, replayed.scores, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
