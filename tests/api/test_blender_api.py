"""llm-blender's API on Blender (rank scores, rank_with_ref, compare modes, conversations, best/worst of n,
best_of_n_generate), on a tiny PairRanker and a tiny generator: each result against what it is defined as."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from blender.aggregation import bubble, bubble_runs
from blender.api import Blender
from blender.comparisons import as_records
from blender.conversations import CONVERSATION_INSTRUCTION, conversation_pairs
from blender.mixinstruct.tiny_models import build_tiny_model
from blender.rankers import encode_records, full_matrices, score_pairs
from blender.rankers.predict import InferenceSettings

QUIET = InferenceSettings(show_progress=False, precision="fp32")
INSTRUCTIONS = ["the answer is", "one two three"]
CANDIDATES = [["good", "bad a b", "yes no maybe", "a"], ["three", "one two", "d e f g h", "no"]]


@pytest.fixture
def blender(tiny_ranker) -> Blender:
    return Blender(tiny_ranker, QUIET)


def matrices(blender: Blender, instructions=INSTRUCTIONS, candidates=CANDIDATES) -> list[np.ndarray]:
    return full_matrices(blender.ranker, as_records(instructions, candidates, None), QUIET)


def test_rank_returns_llm_blenders_scores(blender):
    scores = blender.rank(INSTRUCTIONS, CANDIDATES, return_scores=True)
    for got, m in zip(scores, matrices(blender), strict=True):
        # s_i = mean over all n candidates j (the diagonal included) of M[i, j] − M[j, i].
        np.testing.assert_allclose(got, (m - m.T).mean(axis=1), rtol=0, atol=1e-6)
    ranks = blender.rank(INSTRUCTIONS, CANDIDATES)
    assert ranks == [[1 + sum(o > s for o in row) for s in row] for row in scores]
    # The batch size moves no score; bubble scores are the final positions of one run.
    np.testing.assert_allclose(
        blender.rank(INSTRUCTIONS, CANDIDATES, return_scores=True, batch_size=1), scores, atol=1e-6
    )
    positions = blender.rank(INSTRUCTIONS, CANDIDATES, aggregation="bubble", return_scores=True, seed=3)
    assert [sorted(p) for p in positions] == [[0, 1, 2, 3]] * 2
    for got, m in zip(positions, matrices(blender), strict=True):
        assert int(np.argmax(got)) == int(np.argmax(bubble(m, seed=3)))


def test_rank_with_ref_scores_each_candidate_against_the_reference(blender):
    scores = blender.rank_with_ref(INSTRUCTIONS, CANDIDATES, return_scores=True)  # ref_mode="longest"
    longest = [max(c, key=len) for c in CANDIDATES]
    assert scores == blender.rank_with_ref(
        INSTRUCTIONS, CANDIDATES, return_scores=True, ref_candidates=longest
    )
    records = as_records(INSTRUCTIONS, [[*c, ref] for c, ref in zip(CANDIDATES, longest, strict=True)], None)
    encoded = encode_records(blender.ranker, records)
    for e, row in enumerate(scores):
        forward = score_pairs(blender.ranker, encoded, [(e, j, 4) for j in range(4)], QUIET)
        backward = score_pairs(blender.ranker, encoded, [(e, 4, j) for j in range(4)], QUIET)
        np.testing.assert_allclose(row, forward - backward, rtol=0, atol=1e-6)  # M[c, ref] − M[ref, c]
        assert abs(row[CANDIDATES[e].index(longest[e])]) < 1e-6  # the reference against itself
    for mode, pick in (
        ("shortest", min),
        ("first", lambda c, key: c[0]),
        ("last", lambda c, key: c[-1]),
        ("median_length", lambda c, key: sorted(c, key=key)[len(c) // 2]),
    ):
        refs = [pick(c, key=len) for c in CANDIDATES]
        assert blender.rank_with_ref(INSTRUCTIONS, CANDIDATES, ref_mode=mode) == blender.rank_with_ref(
            INSTRUCTIONS, CANDIDATES, ref_candidates=refs
        )
    with pytest.raises(ValueError, match="ref_mode='random'"):
        blender.rank_with_ref(INSTRUCTIONS, CANDIDATES, ref_mode="random")


def test_compare_modes(blender):
    a = [c[0] for c in CANDIDATES]
    b = [c[1] for c in CANDIDATES]
    m = [x[:2, :2] for x in matrices(blender, INSTRUCTIONS, [[x, y] for x, y in zip(a, b, strict=True)])]
    default = blender.compare(INSTRUCTIONS, a, b, return_logits=True)
    np.testing.assert_allclose(default, [x[0, 1] - x[1, 0] for x in m], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        blender.compare(INSTRUCTIONS, a, b, return_logits=True, mode="[A,B]"),
        [x[0, 1] for x in m],
        rtol=0,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        blender.compare(INSTRUCTIONS, a, b, return_logits=True, mode="[B,A]"),
        [-x[1, 0] for x in m],
        rtol=0,
        atol=1e-6,
    )
    np.testing.assert_array_equal(blender.compare(INSTRUCTIONS, a, b), default > 0)
    np.testing.assert_allclose(blender.compare(INSTRUCTIONS, b, a, return_logits=True), -default, atol=1e-6)
    # One comparison: strings in, one value out.
    single = blender.compare(INSTRUCTIONS[0], a[0], b[0], return_logits=True)
    assert isinstance(single, float) and single == pytest.approx(default[0], abs=1e-6)
    assert blender.compare(INSTRUCTIONS[0], a[0], b[0]) is bool(default[0] > 0)
    with pytest.raises(ValueError, match="mode='A>B'"):
        blender.compare(INSTRUCTIONS, a, b, mode="A>B")
    with pytest.raises(ValueError, match="must be as many"):
        blender.compare(INSTRUCTIONS, a, b[:1])


def test_compare_conversations_reads_llm_blenders_text(blender):
    conv_a = [
        {"role": "USER", "content": "the answer"},
        {"role": "ASSISTANT", "content": "good"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
    ]
    conv_b = [*conv_a[:3], {"role": "assistant", "content": "bad a"}]
    instructions, inputs, texts_a, texts_b = conversation_pairs([conv_a], [conv_b])
    assert instructions == [CONVERSATION_INSTRUCTION]
    assert inputs == ["USER: the answer\nAssistant: <Response 1>\nUSER: one\nAssistant: <Response 2>"]
    assert texts_a == ["<Response 1>: good\n<Response 2>: two"] and texts_b == [
        "<Response 1>: good\n<Response 2>: bad a"
    ]
    got = blender.compare_conversations([conv_a], [conv_b], return_logits=True)
    np.testing.assert_allclose(
        got, blender.compare(instructions, texts_a, texts_b, inputs, return_logits=True)
    )
    with pytest.raises(ValueError, match="same user turns"):
        blender.compare_conversations([conv_a], [[{"role": "user", "content": "other"}, *conv_b[1:]]])
    with pytest.raises(ValueError, match="turn 1: role 'USER', expected assistant"):
        blender.compare_conversations([conv_a[:1] + conv_a[:1]], [conv_b[:2]])
    with pytest.raises(ValueError, match="even length"):
        blender.compare_conversations([conv_a[:3]], [conv_b[:3]])


def test_best_and_worst_of_n(blender):
    scores = blender.rank(INSTRUCTIONS, CANDIDATES, return_scores=True)
    full_best = blender.best_of_n(INSTRUCTIONS, CANDIDATES, pairrm_cmp_type="full")
    assert full_best == [c[int(np.argmax(s))] for c, s in zip(CANDIDATES, scores, strict=True)]
    assert blender.worst_of_n(INSTRUCTIONS, CANDIDATES, pairrm_cmp_type="full") == [
        c[int(np.argmin(s))] for c, s in zip(CANDIDATES, scores, strict=True)
    ]
    ordered = blender.best_of_n(INSTRUCTIONS, CANDIDATES, pairrm_cmp_type="full", return_all=True)
    assert ordered == [
        [c[i] for i in np.argsort(-np.asarray(s), kind="stable")]
        for c, s in zip(CANDIDATES, scores, strict=True)
    ]
    # Bubble: one run from the seeded order; the pick equals the run read off the full matrix, and with
    # return_all it comes first, then the others in the order they lost in.
    ms = matrices(blender)
    for seed in (0, 1, 2):
        picks = blender.best_of_n(INSTRUCTIONS, CANDIDATES, seed=seed, return_all=True)
        worst = blender.worst_of_n(INSTRUCTIONS, CANDIDATES, seed=seed)
        # The instructions of one call run in lockstep from one seeded generator (as bubble_runs does).
        best_positions = bubble_runs(
            [4, 4], lambda t: np.array([ms[e][a, b] - ms[e][b, a] for e, a, b in t]), seed=seed
        )
        worst_positions = bubble_runs(
            [4, 4], lambda t: np.array([ms[e][b, a] - ms[e][a, b] for e, a, b in t]), seed=seed
        )
        for k in range(2):
            order = list(np.argsort(best_positions[k]))
            assert picks[k] == [CANDIDATES[k][i] for i in [order[-1], *order[:-1]]]
            assert worst[k] == CANDIDATES[k][int(np.argmax(worst_positions[k]))]
    # llm-blender's names; one candidate needs no ranking; counts may differ per instruction.
    assert blender.get_best_of_n(["x", "y"], [["only"], ["a", "b"]])[0] == "only"
    assert blender.get_worst_of_n(["x"], [["only"]], return_all=True) == [["only"]]
    with pytest.raises(ValueError, match="pairrm_cmp_type='all'"):
        blender.best_of_n(INSTRUCTIONS, CANDIDATES, pairrm_cmp_type="all")


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    root = tmp_path_factory.mktemp("generators")
    return {
        kind: build_tiny_model(root / kind, kind, seed=0, chat_template=kind == "llama")
        for kind in ("llama", "t5")
    }


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_best_of_n_generate_ranks_the_samples(blender, generators, kind, one_thread):
    loader = AutoModelForCausalLM if kind == "llama" else AutoModelForSeq2SeqLM
    model, tokenizer = (
        loader.from_pretrained(generators[kind]).eval(),
        AutoTokenizer.from_pretrained(generators[kind]),
    )
    torch.manual_seed(0)
    samples = blender.n_generate(model, tokenizer, INSTRUCTIONS, n=3, max_new_tokens=6)
    assert [len(s) for s in samples] == [3, 3] and all(isinstance(t, str) for s in samples for t in s)
    torch.manual_seed(0)
    best = blender.best_of_n_generate(model, tokenizer, INSTRUCTIONS, n=3, max_new_tokens=6, return_all=True)
    assert best == blender.best_of_n(INSTRUCTIONS, samples, return_all=True)  # the same samples, ranked
    if kind == "llama":
        # The prompt is not part of the answer, and the chat template wraps the prompt when asked.
        torch.manual_seed(0)
        templated = blender.n_generate(
            model, tokenizer, INSTRUCTIONS[:1], n=2, max_new_tokens=4, chat_template=True
        )
        assert len(templated[0]) == 2
    assert tokenizer.padding_side == "right" or kind == "t5"  # restored after left-padded generation


def test_vllm_models_need_vllm(blender):
    vllm_like = type("LLM", (), {"__module__": "vllm.entrypoints.llm"})()
    with pytest.raises(ImportError, match=r"pip install 'blender\[vllm\]'"):
        blender.n_generate(vllm_like, None, INSTRUCTIONS, n=2)
    with pytest.raises(TypeError, match="transformers model that generates or a vllm.LLM"):
        blender.n_generate(object(), None, INSTRUCTIONS, n=2)


def test_rank_with_models_mixes_in_the_model_prior(tiny_ranker):
    from blender.evaluation.model_prior import ModelPrior

    plain = Blender(tiny_ranker, QUIET)
    scores = plain.rank(INSTRUCTIONS, CANDIDATES, return_scores=True)
    with pytest.raises(ValueError, match="needs a model prior"):
        plain.rank(INSTRUCTIONS, CANDIDATES, models=[["a"] * len(c) for c in CANDIDATES])
    # A weight so large the prior decides: the candidate of the model with the highest prior ranks first.
    models = [[f"m{k}" for k in range(len(c))] for c in CANDIDATES]
    prior = ModelPrior({f"m{k}": float(k) for k in range(10)}, weight=1000.0)
    mixed = Blender(tiny_ranker, QUIET, model_prior=prior)
    ranks = mixed.rank(INSTRUCTIONS, CANDIDATES, models=models)
    assert [r.index(1) for r in ranks] == [len(c) - 1 for c in CANDIDATES]
    # Weight 0 keeps the ranker's order (its z-scores).
    prior.weight = 0.0
    kept = mixed.rank(INSTRUCTIONS, CANDIDATES, models=models, return_scores=True)
    for z, s in zip(kept, scores, strict=True):
        s = np.asarray(s)
        np.testing.assert_allclose(z, (s - s.mean()) / s.std(), atol=1e-6)
    with pytest.raises(ValueError, match="instruction 0: 1 models"):
        mixed.rank(INSTRUCTIONS, CANDIDATES, models=[["m0"]] + models[1:])
