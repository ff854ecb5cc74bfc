"""llm-blender's API on a ranker built on the real packaged MiniLM, with real alpaca_blend texts: each method
against what it is defined as, and the checkpoint through save_pretrained / AutoModel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from blender.api import Blender
from blender.comparisons import as_records
from blender.mixinstruct.tiny_models import build_tiny_model
from blender.pairwise_judge import BlenderPairwiseJudge
from blender.rankers import PairRanker, build_backbone, full_matrices
from blender.rankers.predict import InferenceSettings
from tests.conftest import SHARED

pytestmark = pytest.mark.integration
QUIET = InferenceSettings(show_progress=False, precision="fp32")


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[list[str]]]:
    lines = (SHARED / "data" / "alpaca_blend" / "val.jsonl").read_text().splitlines()[:2]
    records = [json.loads(line) for line in lines]
    return [r["instruction"] for r in records], [[c["text"] for c in r["candidates"][:3]] for r in records]


@pytest.fixture(scope="module")
def blender(tmp_path_factory) -> Blender:
    torch.manual_seed(0)
    backbone, tokenizer = build_backbone("minilm")
    ranker = PairRanker(
        backbone,
        tokenizer,
        task_names=["gpt4_pref"],
        source_max_length=32,
        candidate_max_length=64,
        pooling="mean",
    )
    folder = tmp_path_factory.mktemp("minilm_ranker")
    ranker.save_pretrained(folder)
    return Blender.from_pretrained(folder, device="cpu", inference=QUIET)


def test_the_checkpoint_round_trips_through_automodel(blender, texts, tmp_path):
    blender.ranker.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    records = as_records(*texts, None)
    for a, b in zip(
        full_matrices(blender.ranker, records, QUIET), full_matrices(again, records, QUIET), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_rank_scores_compare_and_reference(blender, texts):
    instructions, candidates = texts
    scores = blender.rank(instructions, candidates, return_scores=True)
    matrices = full_matrices(blender.ranker, as_records(instructions, candidates, None), QUIET)
    for got, m in zip(scores, matrices, strict=True):
        np.testing.assert_allclose(got, (m - m.T).mean(axis=1), rtol=0, atol=1e-5)
    a, b = [c[0] for c in candidates], [c[1] for c in candidates]
    margins = blender.compare(instructions, a, b, return_logits=True)
    np.testing.assert_allclose(margins, [m[0, 1] - m[1, 0] for m in matrices], rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        blender.compare(instructions, a, b, return_logits=True, mode="[A,B]"),
        [m[0, 1] for m in matrices],
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_array_equal(blender.compare(instructions, a, b), margins > 0)
    rewards = blender.rank_with_ref(instructions, candidates, return_scores=True, ref_mode="first")
    for row, m in zip(rewards, matrices, strict=True):
        np.testing.assert_allclose(row, m[:, 0] - m[0, :], rtol=0, atol=1e-5)  # M[c, ref] − M[ref, c]


def test_conversations_best_worst_and_the_judge(blender, texts):
    instructions, candidates = texts
    conversation = [
        {"role": "user", "content": instructions[0]},
        {"role": "assistant", "content": candidates[0][0]},
    ]
    other = [conversation[0], {"role": "assistant", "content": candidates[0][1]}]
    margin = blender.compare_conversations([conversation], [other], return_logits=True)
    np.testing.assert_allclose(
        blender.compare_conversations([other], [conversation], return_logits=True), -margin, atol=1e-5
    )
    scores = blender.rank(instructions, candidates, return_scores=True)
    assert blender.best_of_n(instructions, candidates, pairrm_cmp_type="full") == [
        c[int(np.argmax(s))] for c, s in zip(candidates, scores, strict=True)
    ]
    assert blender.worst_of_n(instructions, candidates, pairrm_cmp_type="full") == [
        c[int(np.argmin(s))] for c, s in zip(candidates, scores, strict=True)
    ]
    bubble = blender.best_of_n(instructions, candidates, return_all=True)
    assert [sorted(x) for x in bubble] == [sorted(c) for c in candidates]
    picks = BlenderPairwiseJudge(blender).judge(instructions, [c[:2] for c in candidates])
    assert picks == [
        0 if m >= 0 else 1
        for m in blender.compare(
            instructions, [c[0] for c in candidates], [c[1] for c in candidates], return_logits=True
        )
    ]


def test_best_of_n_generate(blender, texts, tmp_path):
    folder = build_tiny_model(tmp_path / "llama", "llama", seed=0)
    model, tokenizer = (
        AutoModelForCausalLM.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
    )
    torch.manual_seed(0)
    samples = blender.n_generate(model, tokenizer, texts[0], n=3, max_new_tokens=8)
    torch.manual_seed(0)
    best = blender.best_of_n_generate(model, tokenizer, texts[0], n=3, max_new_tokens=8)
    assert best == blender.best_of_n(texts[0], samples)
