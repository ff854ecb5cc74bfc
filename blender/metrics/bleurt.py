"""BLEURT (Sellam et al., 2020) through the PyTorch port `bleurt-pytorch`.

The paper's code called `evaluate.load('bleurt')`, whose default checkpoint is BLEURT-base-128, once per
(candidate, reference) pair (PAPER.md, "Metric implementations"); `lucadiliello/bleurt-base-128` is its
PyTorch conversion. BLEURT-20 is `lucadiliello/BLEURT-20` (SentencePiece tokenizer, 512 tokens); either is
named in config (`metrics.bleurt.checkpoint`). bleurt-pytorch does not import under transformers 5 as released;
`blender.metrics._bleurt_compat` makes it import (see there for what and why).
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from blender.devices import resolve_device
from blender.metrics._bleurt_compat import import_bleurt_pytorch, load_bleurt_tokenizer
from blender.metrics.base import check_pairs, checkpoint_error

log = logging.getLogger(__name__)


class BLEURT:
    """BLEURT regression score of each candidate given its reference (unbounded; higher is better).

    Args:
        checkpoint: hub id or local folder of a bleurt-pytorch checkpoint (weights and tokenizer files).
        batch_size: pairs per forward pass.
        max_length: tokens per encoded (reference, candidate) pair; the longer text is cut first, as in
            the original BLEURT. 128 for the *-128 checkpoints, 512 for BLEURT-20.
        device: "auto" (the GPU when there is one), "cpu", "cuda", "cuda:1", ...
        show_progress: draw a progress bar over pairs.
        name: key of this metric in its metric set; error messages point at `metrics.<name>.checkpoint`.
    """

    def __init__(
        self,
        checkpoint: str = "lucadiliello/bleurt-base-128",
        batch_size: int = 32,
        max_length: int = 128,
        device: str = "auto",
        show_progress: bool = True,
        name: str = "bleurt",
    ) -> None:
        self.name = name
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.max_length = max_length
        self.show_progress = show_progress
        self.device = resolve_device(device)
        bleurt_pytorch = import_bleurt_pytorch()
        try:
            self.tokenizer = load_bleurt_tokenizer(checkpoint)
            self.model = bleurt_pytorch.BleurtForSequenceClassification.from_pretrained(checkpoint)
        except (OSError, ValueError) as error:
            raise checkpoint_error("BLEURT", checkpoint, f"metrics.{name}.checkpoint", error) from error
        self.model.to(self.device).eval()

    @torch.no_grad()
    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """BLEURT of each candidate against its reference.

        Args:
            candidates: n candidate texts.
            references: n reference texts, aligned with `candidates`.
        Returns:
            n scores.
        """
        check_pairs(candidates, references)
        scores: list[float] = []
        with tqdm(total=len(candidates), desc=self.name, unit="pair", disable=not self.show_progress) as bar:
            for start in range(0, len(candidates), self.batch_size):
                batch_candidates = candidates[start : start + self.batch_size]
                # BLEURT reads the reference as segment A and the candidate as segment B.
                inputs = self.tokenizer(
                    references[start : start + self.batch_size],
                    batch_candidates,
                    padding="longest",
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                scores.extend(self.model(**inputs).logits[:, 0].tolist())
                bar.update(len(batch_candidates))
        return scores
