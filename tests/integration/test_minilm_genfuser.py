"""The real packaged MiniLM as both ranker and fuser: rank_and_fuse end to end through the Python API."""

from __future__ import annotations

import pytest

from blender.api import Blender
from blender.fuser import GenerationSettings, GenFuser, build_fuser
from blender.rankers import InferenceSettings, PairRanker, build_backbone

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_rank_and_fuse_on_minilm(tmp_path):
    backbone, tokenizer = build_backbone("minilm")
    ranker = PairRanker(backbone, tokenizer, task_names=["q"], source_max_length=32, candidate_max_length=32)
    ranker.save(tmp_path / "ranker")
    fuser = build_fuser(
        "bert2bert",
        name_or_path="minilm",
        packing={
            "candidate_max_length": 16,
            "max_source_length": 96,
            "max_target_length": 16,
            "add_special_tokens": True,
        },
    )
    # The decoder reads MiniLM's weights; its cross-attention is new.
    assert fuser.model.config.decoder.add_cross_attention and fuser.model.config.decoder_start_token_id == 101
    fuser.save(tmp_path / "fuser")
    assert isinstance(GenFuser.load(tmp_path / "fuser"), GenFuser)

    blender = Blender.from_pretrained(
        tmp_path / "ranker",
        device="cpu",
        fuser_checkpoint=tmp_path / "fuser",
        inference=InferenceSettings(precision="fp32", show_progress=False),
        generation=GenerationSettings(num_beams=2, max_new_tokens=6, show_progress=False),
    )
    instructions = ["Name a prime number.", "What colour is the sky?"]
    candidates = [
        ["7 is prime.", "4", "Nine.", "2"],
        ["Blue.", "Green, mostly.", "It is blue on a clear day."],
    ]
    fused = blender.rank_and_fuse(instructions, candidates, top_k=2)
    assert len(fused) == 2 and all(isinstance(text, str) for text in fused)
    # rank_and_fuse = fuse of the top-2 in rank order.
    ranks = blender.rank(instructions, candidates)
    top2 = [
        [c[i] for i in sorted(range(len(c)), key=lambda i: r[i])[:2]]
        for c, r in zip(candidates, ranks, strict=True)
    ]
    assert blender.fuse(instructions, top2) == fused
    with pytest.raises(ValueError, match="no fuser"):
        Blender(ranker).fuse(instructions, top2)
