"""scripts/bench_ranker.py measures precision agreement on full matrices: it takes the newest PairRanker run, not
the newest run (the default ranker is the listwise one, which has no matrix)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import load_script


def load_bench():
    return load_script("bench_ranker")


def test_the_agreement_checkpoint_is_the_newest_pairranker_run(tiny_ranker, tmp_path, monkeypatch):
    from tests.rankers.test_listwise import listwise

    bench = load_bench()
    monkeypatch.chdir(tmp_path)
    assert bench.newest_checkpoint() is None
    pair, lw = Path("outputs/train_ranker/pair/best"), Path("outputs/train_ranker/lw/best")
    tiny_ranker.save(pair)
    listwise().save(lw)
    os.utime(pair, (1, 1))  # the listwise run is the newer one
    assert bench.is_pairwise(pair) and not bench.is_pairwise(lw)
    assert not bench.is_pairwise(tmp_path / "missing")
    assert bench.newest_checkpoint() == pair
