"""Use a trained ranker from Python.

from blender.api import Blender
blender = Blender.from_pretrained("outputs/train_ranker/<run_id>/best")
ranks = blender.rank(["Name a prime."], [["4", "7", "9"]])      # [[3, 1, 2]]-like, 1 = best
blender.compare("Name a prime.", "7", "4")                       # > 0: the first answer is better

blender = Blender.from_pretrained(ranker_dir, fuser_checkpoint="outputs/train_fuser/<run_id>/best")
blender.rank_and_fuse(["Name a prime."], [["4", "7", "9"]], top_k=3)  # one fused answer per instruction
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from blender.aggregation import get_aggregation
from blender.fuser.model import GenerationSettings, GenFuser
from blender.metrics.gpt_rank import competition_ranks
from blender.rankers.predict import (
    InferenceSettings,
    bubble_scores_online,
    encode_records,
    full_matrices,
    score_pairs,
)
from blender.rankers.registry import Ranker, kind_of, load_ranker
from blender.records.schema import Candidate, Record


def _as_records(
    instructions: Sequence[str], candidates: Sequence[Sequence[str]], inputs: Sequence[str] | None
) -> list[Record]:
    if len(instructions) != len(candidates):
        raise ValueError(f"{len(instructions)} instructions but {len(candidates)} candidate lists")
    if inputs is not None and len(inputs) != len(instructions):
        raise ValueError(f"{len(instructions)} instructions but {len(inputs)} inputs")
    records = []
    for k, (instruction, texts) in enumerate(zip(instructions, candidates, strict=True)):
        if len(texts) < 2:
            raise ValueError(f"instruction {k}: need at least two candidates to rank, got {len(texts)}")
        records.append(
            Record(
                id=str(k),
                instruction=instruction,
                input=inputs[k] if inputs is not None else "",
                output="",
                candidates=[Candidate(model=f"candidate_{i}", text=t) for i, t in enumerate(texts)],
            )
        )
    return records


class Blender:
    """A trained ranker behind `rank` and `compare` (PairRanker, or a pointwise one: SummaReranker, SimCLS,
    MLM-Scoring, which scores each candidate on its own and ignores `aggregation`), and optionally a GenFuser
    behind `fuse` and `rank_and_fuse`.

    Args:
        ranker: the model.
        inference: batching and precision of its forward passes.
        fuser: a trained GenFuser for `fuse` and `rank_and_fuse`.
    """

    def __init__(
        self, ranker: Ranker, inference: InferenceSettings | None = None, fuser: GenFuser | None = None
    ) -> None:
        self.ranker = ranker.eval()
        self.inference = inference or InferenceSettings(show_progress=False)
        self.fuser = fuser

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike,
        device: str | None = None,
        inference: InferenceSettings | None = None,
        fuser_checkpoint: str | os.PathLike | None = None,
        generation: GenerationSettings | None = None,
    ) -> Blender:
        """Load a ranker checkpoint folder written by training (`…/best`), and a fuser's when given; on GPU
        when there is one. `generation` overrides the fuser's saved decoding settings."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        fuser = None
        if fuser_checkpoint is not None:
            fuser = GenFuser.load(fuser_checkpoint, generation)
            fuser.model.to(device)
        return cls(load_ranker(checkpoint).to(device), inference, fuser)

    def rank(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None = None,
        aggregation: str = "max_logits",
        seed: int = 0,
    ) -> list[list[int]]:
        """Rank each instruction's candidates.

        Args:
            instructions: one per example.
            candidates: per example, its candidate answers.
            inputs: optional per-example inputs (MixInstruct's `input` field).
            aggregation: "max_logits" (full matrix, the paper's default), "max_wins" (full matrix) or
                "bubble" (one bubble run online: 2(N−1) forward passes, only the top rank is exact).
            seed: the bubble run's random starting order.
        Returns:
            Per example, the rank of each candidate (1 = best, ties share the better rank).
        """
        records = _as_records(instructions, candidates, inputs)
        if not kind_of(self.ranker).pairwise:
            scores = self.ranker.score_records(records, self.inference)
        elif aggregation == "bubble":
            scores = bubble_scores_online(self.ranker, records, self.inference, seed=seed)
        else:
            aggregate = get_aggregation(aggregation)
            scores = [aggregate(m) for m in full_matrices(self.ranker, records, self.inference)]
        return [competition_ranks(s).tolist() for s in scores]

    def compare(self, instruction: str, a: str, b: str, input: str = "") -> float:
        """How much better `a` is than `b` for the instruction: M[a,b] − M[b,a], both orders averaged out.

        Returns:
            A logit margin; > 0 means `a` is judged better.
        """
        (record,) = _as_records([instruction], [[a, b]], [input])
        if not kind_of(self.ranker).pairwise:  # a pointwise ranker: the difference of its two scores
            score_a, score_b = self.ranker.score_records([record], self.inference)[0]
            return float(score_a - score_b)
        encoded = encode_records(self.ranker, [record])
        logits = score_pairs(self.ranker, encoded, [(0, 0, 1), (0, 1, 0)], self.inference)
        return float(np.subtract(*logits))

    def fuse(
        self,
        instructions: Sequence[str],
        topk_candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None = None,
    ) -> list[str]:
        """Fuse each instruction's candidates (best first, as `rank_and_fuse` passes them) into one answer.

        Args:
            instructions: one per example.
            topk_candidates: per example, the candidates to fuse, in rank order.
            inputs: optional per-example inputs.
        Returns:
            One fused answer per example.
        """
        if self.fuser is None:
            raise ValueError("this Blender has no fuser: Blender.from_pretrained(..., fuser_checkpoint=DIR)")
        if len(instructions) != len(topk_candidates):
            raise ValueError(f"{len(instructions)} instructions but {len(topk_candidates)} candidate lists")
        return self.fuser.generate(
            instructions, list(inputs) if inputs is not None else [""] * len(instructions), topk_candidates
        )

    def rank_and_fuse(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        top_k: int = 3,
        inputs: Sequence[str] | None = None,
        aggregation: str = "max_logits",
    ) -> list[str]:
        """Rank each instruction's candidates, then fuse its `top_k` best (in rank order): LLM-Blender.

        Returns:
            One fused answer per example.
        """
        ranks = self.rank(instructions, candidates, inputs, aggregation)
        topk = [
            [texts[i] for i in sorted(range(len(texts)), key=lambda i: r[i])[:top_k]]
            for texts, r in zip(candidates, ranks, strict=True)
        ]
        return self.fuse(instructions, topk, inputs)


__all__ = ["Blender"]
