"""Distinct answers, 10-gram loops and median length, on strings checked by hand."""

from __future__ import annotations

import pytest

from blender.fuser.quality import answer_statistics, has_loop


def test_a_loop_is_an_ngram_three_times():
    assert has_loop("a b a b a b", n=2, times=3)
    assert not has_loop("a b c a b", n=2, times=3)
    loop = " ".join(["one two three four five six seven eight nine ten"] * 3)
    assert has_loop(loop) and not has_loop(" ".join(["one two three four five six seven eight nine ten"] * 2))
    assert not has_loop("short")


def test_answer_statistics():
    answers = ["a b c", "a b c ", "d e", "", " ".join(["x y z w v u t s r q"] * 3)]
    references = ["r " * 4, "r " * 4, "r " * 2, "r " * 6, "r " * 10]
    stats = answer_statistics(answers, references)
    assert (stats.n_answers, stats.n_distinct, stats.n_empty) == (5, 4, 1)
    assert stats.loop_pct == pytest.approx(20.0)
    assert stats.median_words == 3 and stats.reference_median_words == 4 and stats.length_ratio == 0.75
    with pytest.raises(ValueError, match="need as many"):
        answer_statistics(["a"], [])
