"""scripts/bench_ranker.py measures precision agreement on full matrices: it takes the newest PairRanker run, not
the newest run (the default ranker is the listwise one, which has no matrix)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_ranker.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_ranker", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
