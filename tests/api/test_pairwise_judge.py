"""The TRL-compatible judge: TRL's pairwise-judge interface over any blender ranker."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

from blender.api import Blender
from blender.pairwise_judge import BlenderPairwiseJudge
from blender.rankers import load_ranker
from blender.rankers.predict import InferenceSettings
from tests.conftest import REPO, SHARED

QUIET = InferenceSettings(show_progress=False, precision="fp32")
PROMPTS = ["the answer is", "one two three", "yes no"]
PAIRS = [["good", "bad a b"], ["three", "one two"], ["maybe", "no"]]


def trl_judges():
    for module in ("trl.experimental.judges", "trl"):
        try:
            if importlib.util.find_spec(module) is not None:
                found = importlib.import_module(module)
                if hasattr(found, "BasePairwiseJudge"):
                    return found
        except ImportError:
            continue
    return None


def test_judge_follows_trls_documented_interface(tiny_ranker):
    # As TRL documents BasePairwiseJudge: judge(prompts, completions, shuffle_order=True) -> list[int], the
    # index of the better completion of each pair.
    judge = BlenderPairwiseJudge(Blender(tiny_ranker, QUIET), seed=0)
    parameters = inspect.signature(judge.judge).parameters
    assert list(parameters)[:3] == ["prompts", "completions", "shuffle_order"]
    assert parameters["shuffle_order"].default is True
    picks = judge.judge(PROMPTS, PAIRS)
    assert all(type(p) is int and p in (0, 1) for p in picks)
    margins = Blender(tiny_ranker, QUIET).compare(
        PROMPTS, [p[0] for p in PAIRS], [p[1] for p in PAIRS], return_logits=True
    )
    assert picks == [0 if m >= 0 else 1 for m in margins]
    # Both orders are read, so shuffling changes no verdict; the pairs presented swapped give swapped picks.
    assert judge.judge(PROMPTS, PAIRS, shuffle_order=False) == picks
    assert judge.judge(PROMPTS, [p[::-1] for p in PAIRS], shuffle_order=False) == [1 - p for p in picks]
    probabilities = judge.judge(PROMPTS, PAIRS, shuffle_order=False, return_scores=True, temperature=2.0)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-np.asarray(margins) / 2.0)), rtol=1e-6)
    with pytest.raises(ValueError, match="exactly two string completions"):
        judge.judge(PROMPTS[:1], [["a", "b", "c"]])
    with pytest.raises(TypeError, match="apply the chat template first"):
        judge.judge([[{"role": "user", "content": "hi"}]], [["a", "b"]])


def test_one_order_mode_shuffles_and_undoes_the_shuffle(tiny_ranker):
    blender = Blender(tiny_ranker, QUIET)
    judge = BlenderPairwiseJudge(blender, mode="[A,B]", seed=4)
    flips = np.random.default_rng(4).random(len(PROMPTS)) < 0.5
    a = [p[1] if f else p[0] for p, f in zip(PAIRS, flips, strict=True)]
    b = [p[0] if f else p[1] for p, f in zip(PAIRS, flips, strict=True)]
    margins = blender.compare(PROMPTS, a, b, return_logits=True, mode="[A,B]")
    expected = [
        (1 if m >= 0 else 0) if f else (0 if m >= 0 else 1) for m, f in zip(margins, flips, strict=True)
    ]
    assert judge.judge(PROMPTS, PAIRS) == expected


@pytest.mark.skipif(trl_judges() is None, reason="no TRL with judges installed (TRL 1.1 dropped them)")
def test_judge_is_a_trl_pairwise_judge(tiny_ranker):
    base = trl_judges().BasePairwiseJudge
    judge = BlenderPairwiseJudge(Blender(tiny_ranker, QUIET))
    assert isinstance(judge, base) and issubclass(BlenderPairwiseJudge, base)
    assert not inspect.isabstract(BlenderPairwiseJudge)


@pytest.mark.skipif(
    not (SHARED / "fixtures" / "pairrm_tiny").is_dir(), reason="needs the tiny PairRM fixture"
)
def test_judge_on_pairrm_agrees_with_the_originals_compare():
    golden = json.loads((SHARED / "fixtures" / "pairrm_tiny" / "golden.json").read_text())
    judge = BlenderPairwiseJudge(load_ranker(SHARED / "fixtures" / "pairrm_tiny" / "pairrm"), seed=0)
    pairs = golden["pairs"][:3]
    picks = judge.judge([p["source"] for p in pairs], [[p["candidate_a"], p["candidate_b"]] for p in pairs])
    values = [r["value"] for r in golden["pairrm"]["compare_default"]["results"][:3]]
    assert picks == [0 if v > 0 else 1 for v in values]


def test_without_trl_the_judge_stands_alone():
    # TRL is not a dependency: with no TRL importable the class is a plain object with the same interface.
    code = (
        "import sys\nfor name in ('trl', 'trl.experimental', 'trl.experimental.judges'):\n    sys.modules[name] = None\n"
        "from blender.pairwise_judge import BlenderPairwiseJudge\nprint(BlenderPairwiseJudge.__mro__[1].__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "object"
