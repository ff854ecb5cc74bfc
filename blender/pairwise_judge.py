"""A pairwise judge with TRL's interface, backed by any blender ranker (PairRM by default).

TRL's judges (`BasePairwiseJudge`: `judge(prompts, completions, shuffle_order=True) -> list[int]`, the index of
the better completion of each pair) drive its online trainers and `WinRateCallback`. Its `PairRMJudge` needs
llm-blender, which does not import on transformers 5, and TRL 1.1 dropped its judges (trl#4918). This judge
gives TRL code the same interface on blender's rankers:

    from blender.pairwise_judge import BlenderPairwiseJudge
    judge = BlenderPairwiseJudge("llm-blender/PairRM")
    judge.judge(["What is 2 + 2?"], [["4", "5"]])        # [0]

When a TRL that still has judges is installed (`trl.experimental.judges`, TRL 1.0; `trl`, before), the class
subclasses its `BasePairwiseJudge`, so `isinstance` checks in TRL pass; TRL is not a dependency of blender.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from blender.api import Blender
from blender.rankers.predict import InferenceSettings
from blender.rankers.registry import Ranker


def _trl_base() -> type:
    """TRL's `BasePairwiseJudge` when an installed TRL has one, else `object`."""
    try:
        from trl.experimental.judges import BasePairwiseJudge  # TRL 1.0
    except ImportError:
        try:
            from trl import BasePairwiseJudge  # TRL before 1.0
        except ImportError:
            return object
    return BasePairwiseJudge


class BlenderPairwiseJudge(_trl_base()):
    """Judge completion pairs with a blender ranker, as TRL's `PairRMJudge` does with llm-blender.

    Args:
        ranker: a checkpoint folder or hub id (default "llm-blender/PairRM"), a loaded ranker, or a `Blender`.
        mode: the compare mode (see `Blender.compare`); the default reads both orders, so it has no lean towards
            a position and shuffling changes nothing.
        device: where to load a checkpoint (default: GPU when there is one).
        seed: seeds the shuffle of `shuffle_order` (None: a fresh random order each call, as TRL's).
        inference: batching and precision of the ranker's forward passes.
    """

    def __init__(
        self,
        ranker: str | os.PathLike | Ranker | Blender = "llm-blender/PairRM",
        mode: str = "[A,B]+[B,A]",
        device: str | None = None,
        seed: int | None = None,
        inference: InferenceSettings | None = None,
    ) -> None:
        if isinstance(ranker, Blender):
            self.blender = ranker
        elif isinstance(ranker, str | os.PathLike):
            self.blender = Blender.from_pretrained(ranker, device=device, inference=inference)
        else:
            self.blender = Blender(ranker, inference)
        self.mode = mode
        self.rng = np.random.default_rng(seed)

    def judge(
        self,
        prompts: Sequence[str],
        completions: Sequence[Sequence[str]],
        shuffle_order: bool = True,
        return_scores: bool = False,
        temperature: float = 1.0,
    ) -> list[int] | list[float]:
        """Which completion of each pair is better.

        Args:
            prompts: one prompt (a string) per pair.
            completions: per prompt, exactly two completions.
            shuffle_order: present each pair in a random order to the ranker (undone in the result), against a
                lean towards a position.
            return_scores: return the probability that the first completion is better instead,
                sigmoid(margin / temperature) (TRL's soft judge: its softmax over the two rank scores).
            temperature: scales the margin when `return_scores`.
        Returns:
            Per prompt, 0 when the first completion is judged better and 1 when the second is (ties: 0); or
            the probabilities.
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completion pairs")
        for k, (prompt, pair) in enumerate(zip(prompts, completions, strict=True)):
            if not isinstance(prompt, str):
                raise TypeError(
                    f"prompt {k}: a string expected (apply the chat template first), got {type(prompt).__name__}"
                )
            if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(c, str) for c in pair):
                raise ValueError(
                    f"prompt {k}: the judge compares exactly two string completions, got {pair!r:.80}"
                )
        flip = self.rng.random(len(prompts)) < 0.5 if shuffle_order else np.zeros(len(prompts), dtype=bool)
        first = [pair[1] if f else pair[0] for pair, f in zip(completions, flip, strict=True)]
        second = [pair[0] if f else pair[1] for pair, f in zip(completions, flip, strict=True)]
        margins = np.asarray(
            self.blender.compare(list(prompts), first, second, return_logits=True, mode=self.mode)
        )
        margins = np.where(flip, -margins, margins)  # > 0: completions[k][0] is better
        if return_scores:
            return (1.0 / (1.0 + np.exp(-margins / temperature))).tolist()
        return [0 if m >= 0 else 1 for m in margins]
