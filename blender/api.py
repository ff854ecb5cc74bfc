"""Use a ranker from Python: blender's own checkpoints and the released PairRM rankers.

from blender.api import Blender
blender = Blender.from_pretrained("llm-blender/PairRM")                 # or a folder: outputs/train_ranker/<run>/best
blender.rank(["Name a prime."], [["4", "7", "9"]])                     # [[3, 1, 2]]-like, 1 = best
blender.rank(["Name a prime."], [["4", "7", "9"]], return_scores=True)  # higher is better
blender.compare(["Name a prime."], ["7"], ["4"])                        # array([ True])
blender.best_of_n(["Name a prime."], [["4", "7", "9"]])                 # ["7"]-like

The methods follow llm-blender's `Blender` so code can switch: `rank`, `rank_with_ref`, `compare`,
`compare_conversations`, `best_of_n` / `worst_of_n` (also as `get_best_of_n` / `get_worst_of_n`), `n_generate`,
`best_of_n_generate`, `fuse`, `rank_and_fuse`. Where they differ: the first argument is the instruction and
`inputs=` the optional input (llm-blender's `rank(inputs, candidates, instructions=I)` is `rank(I, candidates,
inputs=inputs)` here; the source is the instruction then the input, joined with no separator for PairRM's
layouts, as llm-blender does, and with a newline for blender's own rankers, as they were trained); scores come back as lists, one per
instruction, so instructions may have different numbers of candidates; `compare(mode="[B,A]")` is oriented
like the other modes (> 0: A better), where llm-blender returns the raw [B,A] logit; the bubble run's starting
order is seeded (`seed=`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blender.comparisons import (
    COMPARE_MODES,
    REFERENCE_MODES,
    as_records,
    candidate_scores,
    pair_margins,
    reference_text,
    selection_orders,
    with_reference,
)
from blender.conversations import conversation_pairs
from blender.evaluation.model_prior import PRIOR_FILE, ModelPrior
from blender.fuser.model import GenerationSettings, GenFuser
from blender.metrics.gpt_rank import competition_ranks
from blender.rankers.predict import InferenceSettings
from blender.rankers.registry import Ranker, load_ranker
from blender.sampling import build_prompts, sample_candidates


class Blender:
    """A ranker behind `rank`, `compare` and best-of-n (a PairRanker, a released PairRM, or a pointwise one:
    SummaReranker, SimCLS, MLM-Scoring, which scores each candidate on its own and ignores `aggregation` and
    the compare mode), and optionally a GenFuser behind `fuse` and `rank_and_fuse`.

    Args:
        ranker: the model.
        inference: batching and precision of its forward passes.
        fuser: a trained GenFuser for `fuse` and `rank_and_fuse`.
        model_prior: per-model priors and their weight (a training run's `best/model_prior.json`, which
            `from_pretrained` loads), used by `rank(..., models=...)` when the candidates' models are known.
    """

    def __init__(
        self,
        ranker: Ranker,
        inference: InferenceSettings | None = None,
        fuser: GenFuser | None = None,
        model_prior: ModelPrior | None = None,
    ) -> None:
        self.ranker = ranker.eval()
        self.model_prior = model_prior
        # fp32 unless asked: scores from Python equal the original's (PairRM's golden logits); the configs' bf16
        # is a speed choice for long runs (inference=InferenceSettings(precision="bf16") here).
        self.inference = inference or InferenceSettings(show_progress=False, precision="fp32")
        self.fuser = fuser

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike,
        device: str | None = None,
        inference: InferenceSettings | None = None,
        fuser_checkpoint: str | os.PathLike | None = None,
        generation: GenerationSettings | None = None,
        backbone: str | None = None,
    ) -> Blender:
        """Load a ranker by folder or hub id: a training run's `…/best`, a checkpoint saved with
        `save_pretrained`, `llm-blender/PairRM` or `llm-blender/PairRM-hf` (see `blender.rankers.load_ranker`);
        and a fuser's when given. On GPU when there is one. `generation` overrides the fuser's saved decoding
        settings; `backbone` is where the `llm-blender/PairRM` layout's backbone is, instead of its
        `model_name`."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        fuser = None
        if fuser_checkpoint is not None:
            fuser = GenFuser.load(fuser_checkpoint, generation)
            fuser.model.to(device)
        prior_file = Path(checkpoint) / PRIOR_FILE
        prior = ModelPrior.load(prior_file) if prior_file.is_file() else None
        return cls(
            load_ranker(checkpoint, map_location=device, backbone=backbone).to(device),
            inference,
            fuser,
            prior,
        )

    # ---------------------------------------------------------------- scoring
    def _settings(self, batch_size: int | None) -> InferenceSettings:
        if batch_size is None:
            return self.inference
        return dataclasses.replace(self.inference, max_batch_size=batch_size)

    def rank(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None = None,
        aggregation: str = "max_logits",
        seed: int = 0,
        return_scores: bool = False,
        batch_size: int | None = None,
        models: Sequence[Sequence[str]] | None = None,
    ) -> list[list[int]] | list[list[float]]:
        """Rank (or score) each instruction's candidates.

        Args:
            instructions: one per example.
            candidates: per example, its candidate answers (at least two).
            inputs: optional per-example inputs (MixInstruct's `input` field).
            aggregation: "max_logits" (full matrix, the paper's default and llm-blender's), "max_wins" (full
                matrix) or "bubble" (one bubble run online: 2(N−1) forward passes, only the top is exact).
            seed: the bubble run's random starting order.
            return_scores: return scores instead of ranks. For "max_logits" they are llm-blender's: the row
                mean of M − Mᵀ, s_i = mean_j (M[i,j] − M[j,i]) over all n candidates j; for "max_wins" the
                win counts; for "bubble" the final positions; a pointwise ranker's own scores.
            batch_size: rows per forward batch (default: the `inference` settings'); scores do not depend on it.
            models: per example, the model that wrote each candidate; the scores are then mixed with the model
                prior, z(scores) + weight * z(prior) (`blender.evaluation.model_prior`; a model the prior
                never saw gets the mean prior).
        Returns:
            Per example, the rank of each candidate (1 = best, ties share the better rank), or its score
            (higher is better).
        """
        records = as_records(instructions, candidates, inputs)
        scores = candidate_scores(self.ranker, records, aggregation, seed, self._settings(batch_size))
        if models is not None:
            scores = self._with_prior(scores, candidates, models)
        if return_scores:
            return [np.asarray(s, dtype=float).tolist() for s in scores]
        return [competition_ranks(s).tolist() for s in scores]

    def _with_prior(
        self,
        scores: Sequence[np.ndarray],
        candidates: Sequence[Sequence[str]],
        models: Sequence[Sequence[str]],
    ) -> list[np.ndarray]:
        if self.model_prior is None:
            raise ValueError(
                "rank(models=...) needs a model prior: a checkpoint trained by make train-ranker has "
                "best/model_prior.json, or pass Blender(..., model_prior=ModelPrior.load(path))"
            )
        if len(models) != len(candidates):
            raise ValueError(f"models has {len(models)} entries for {len(candidates)} instructions")
        for e, (names, texts) in enumerate(zip(models, candidates, strict=True)):
            if len(names) != len(texts):
                raise ValueError(f"instruction {e}: {len(names)} models for {len(texts)} candidates")
        return [
            self.model_prior.combine(np.asarray(s, dtype=float), list(m))
            for s, m in zip(scores, models, strict=True)
        ]

    def rank_with_ref(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None = None,
        return_scores: bool = False,
        ref_mode: str = "longest",
        ref_candidates: Sequence[str] | None = None,
        mode: str = "[A,B]+[B,A]",
        batch_size: int | None = None,
    ) -> list[list[int]] | list[list[float]]:
        """Score each candidate against one reference answer per instruction: a scalar reward per answer.

        The score of candidate c is `compare(reference, c)` negated: with the default mode,
        M[c, ref] − M[ref, c] (> 0: c is judged better than the reference). As llm-blender's `rank_with_ref`.

        Args:
            ref_mode: which candidate is the reference when `ref_candidates` is not given: "longest",
                "shortest", "median_length" (by characters), "first" or "last".
            ref_candidates: one reference text per instruction (overrides `ref_mode`).
            mode: the compare mode (see `compare`).
            return_scores, batch_size: as `rank`.
        Returns:
            Per example, each candidate's rank (1 = best) or score.
        """
        records = as_records(instructions, candidates, inputs, min_candidates=1)
        if ref_candidates is None:
            references = [reference_text([c.text for c in r.candidates], ref_mode) for r in records]
        else:
            if isinstance(ref_candidates, str) or len(ref_candidates) != len(records):
                raise ValueError(
                    f"{len(records)} instructions but ref_candidates is not a list of as many strings"
                )
            references = list(ref_candidates)
        with_ref = with_reference(records, references)
        pairs = [(e, len(r.candidates), j) for e, r in enumerate(records) for j in range(len(r.candidates))]
        margins = pair_margins(self.ranker, with_ref, pairs, mode, self._settings(batch_size))
        scores, start = [], 0
        for r in records:
            scores.append(-margins[start : start + len(r.candidates)])
            start += len(r.candidates)
        if return_scores:
            return [s.tolist() for s in scores]
        return [competition_ranks(s).tolist() for s in scores]

    def compare(
        self,
        instructions: str | Sequence[str],
        candidates_a: str | Sequence[str],
        candidates_b: str | Sequence[str],
        inputs: str | Sequence[str] | None = None,
        return_logits: bool = False,
        mode: str = "[A,B]+[B,A]",
        batch_size: int | None = None,
    ) -> np.ndarray | float | bool:
        """Compare candidate a with candidate b for each instruction.

        Args:
            instructions, candidates_a, candidates_b, inputs: lists of equal length (or one string each, for a
                single comparison).
            return_logits: return the logit margins instead of whether a is better.
            mode: "[A,B]+[B,A]" (default, llm-blender's: both orders, M[a,b] − M[b,a], which cancels the
                ranker's lean towards a position), "[A,B]" (one pass, M[a,b]) or "[B,A]" (one pass, −M[b,a]).
                Every mode is > 0 when a is judged better.
            batch_size: as `rank`.
        Returns:
            [n] margins (float) or a-is-better flags (bool); a single value for string arguments.
        """
        single = isinstance(instructions, str)
        if single:
            if not (isinstance(candidates_a, str) and isinstance(candidates_b, str)):
                raise TypeError(
                    "one instruction (a string) compares one candidate_a with one candidate_b (strings)"
                )
            instructions, candidates_a, candidates_b = [instructions], [candidates_a], [candidates_b]
            inputs = [inputs] if isinstance(inputs, str) else inputs
        if not len(instructions) == len(candidates_a) == len(candidates_b):
            raise ValueError(
                f"{len(instructions)} instructions, {len(candidates_a)} candidates_a and "
                f"{len(candidates_b)} candidates_b: they must be as many"
            )
        records = as_records(
            instructions, [[a, b] for a, b in zip(candidates_a, candidates_b, strict=True)], inputs
        )
        margins = pair_margins(
            self.ranker, records, [(e, 0, 1) for e in range(len(records))], mode, self._settings(batch_size)
        )
        result = margins if return_logits else margins > 0
        return result[0].item() if single else result

    def compare_conversations(
        self,
        conversations_a: Sequence[Sequence[Mapping[str, str]]],
        conversations_b: Sequence[Sequence[Mapping[str, str]]],
        return_logits: bool = False,
        mode: str = "[A,B]+[B,A]",
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Compare two versions of each multi-turn conversation that share their user turns (llm-blender's
        `compare_conversations`; see `blender.conversations` for the text the ranker reads).

        Args:
            conversations_a, conversations_b: per example, a list of {"role", "content"} turns, user first.
            return_logits, mode, batch_size: as `compare`.
        Returns:
            [n] margins, or whether conversation a is better.
        """
        instructions, inputs, texts_a, texts_b = conversation_pairs(conversations_a, conversations_b)
        return self.compare(
            instructions,
            texts_a,
            texts_b,
            inputs,
            return_logits=return_logits,
            mode=mode,
            batch_size=batch_size,
        )

    # ---------------------------------------------------------------- best of n
    def best_of_n(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None = None,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> list[str] | list[list[str]]:
        """The best candidate of each instruction.

        Args:
            pairrm_cmp_type: "bubble" (one bubble run from a seeded random order: 2(N−1) forward passes) or
                "full" (the full matrix, N(N−1) passes, MaxLogits). A pointwise ranker always scores all.
            return_all: return every candidate, the pick first: by score for "full", and for "bubble" the
                pick and then the others in the order they lost in (as llm-blender; only the pick is ranked).
            seed: the bubble run's starting order.
            batch_size: as `rank`.
        Returns:
            Per instruction, the best text (or all texts, best first).
        """
        return self._select(
            instructions, candidates, inputs, pairrm_cmp_type, return_all, seed, batch_size, False
        )

    def worst_of_n(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None = None,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> list[str] | list[list[str]]:
        """The worst candidate of each instruction (e.g. the rejected answer of a DPO pair); as `best_of_n`,
        with the worst first."""
        return self._select(
            instructions, candidates, inputs, pairrm_cmp_type, return_all, seed, batch_size, True
        )

    def _select(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        inputs: Sequence[str] | None,
        pairrm_cmp_type: str,
        return_all: bool,
        seed: int,
        batch_size: int | None,
        worst: bool,
    ) -> list[str] | list[list[str]]:
        records = as_records(instructions, candidates, inputs, min_candidates=1)
        orders = selection_orders(
            self.ranker, records, pairrm_cmp_type, seed, self._settings(batch_size), worst=worst
        )
        if return_all:
            return [[r.candidates[i].text for i in order] for r, order in zip(records, orders, strict=True)]
        return [r.candidates[order[0]].text for r, order in zip(records, orders, strict=True)]

    get_best_of_n = best_of_n  # llm-blender's names
    get_worst_of_n = worst_of_n

    def n_generate(
        self,
        model: Any,
        model_tokenizer: Any,
        instructions: Sequence[str],
        inputs: Sequence[str] | None = None,
        n: int = 5,
        sampling_mode: str | None = "top_p_sampling",
        batch_size: int = 4,
        chat_template: bool = False,
        **generate_kwargs: Any,
    ) -> list[list[str]]:
        """Sample n answers per instruction from a transformers model or a vLLM `LLM` (see `blender.sampling`)."""
        prompts = build_prompts(instructions, inputs, model_tokenizer, chat_template)
        return sample_candidates(
            model,
            model_tokenizer,
            prompts,
            n=n,
            sampling_mode=sampling_mode,
            batch_size=batch_size,
            show_progress=self.inference.show_progress,
            add_special_tokens=not chat_template,
            **generate_kwargs,
        )

    def best_of_n_generate(
        self,
        model: Any,
        model_tokenizer: Any,
        instructions: Sequence[str],
        inputs: Sequence[str] | None = None,
        n: int = 5,
        sampling_mode: str | None = "top_p_sampling",
        batch_size: int = 4,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        chat_template: bool = False,
        seed: int = 0,
        **generate_kwargs: Any,
    ) -> list[str] | list[list[str]]:
        """Sample n answers per instruction and keep the ranker's best (llm-blender's `best_of_n_generate`).

        Args:
            model, model_tokenizer: a transformers model that generates and its tokenizer, or a `vllm.LLM`.
            n, sampling_mode, batch_size, generate_kwargs: see `blender.sampling.sample_candidates`.
            chat_template: wrap each prompt as a user message in the tokenizer's chat template.
            pairrm_cmp_type, return_all, seed: as `best_of_n`.
        Returns:
            Per instruction, the best sample (or all samples, best first).
        """
        samples = self.n_generate(
            model,
            model_tokenizer,
            instructions,
            inputs,
            n=n,
            sampling_mode=sampling_mode,
            batch_size=batch_size,
            chat_template=chat_template,
            **generate_kwargs,
        )
        return self.best_of_n(
            instructions, samples, inputs, pairrm_cmp_type=pairrm_cmp_type, return_all=return_all, seed=seed
        )

    # ---------------------------------------------------------------- fusion
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


__all__ = ["COMPARE_MODES", "REFERENCE_MODES", "Blender"]
