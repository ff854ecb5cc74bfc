"""BERTScore (Zhang et al., 2020) F1 through the `bert-score` package.

The paper's code called `bert_score.score(..., model_type="bert-base-multilingual-cased", lang="en")` and kept
F1 without baseline rescaling (PAPER.md, "Metric implementations"); bert-score then uses layer 9, its
WMT16-tuned layer for that model. The offline default is the packaged all-MiniLM-L6-v2 (`minilm`), which
bert-score does not know, so its layer comes from config (`conf/metrics/offline.yaml`).
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from blender.devices import resolve_device
from blender.metrics.base import check_pairs, checkpoint_error, require
from blender.packaged_models import resolve_name_or_path

log = logging.getLogger(__name__)


class BERTScore:
    """BERTScore F1 of each candidate against its reference (in [-1, 1], about [0.5, 1] in practice).

    Args:
        name_or_path: "minilm" (the packaged all-MiniLM-L6-v2), a hub id or a local model folder.
        num_layers: use the output of this layer (1-based; layers above it are dropped). None takes
            bert-score's tuned layer, which exists only for the hub ids it lists.
        batch_size: texts per forward pass.
        chunk_size: pairs handed to bert-score at once. bert-score keeps every embedding of a call in memory,
            so chunks bound memory for long runs; the bar advances per chunk.
        use_fast_tokenizer: bert-score's `use_fast_tokenizer` (its default, and the paper's, is False).
        device: "auto" (the GPU when there is one), "cpu", "cuda", "cuda:1", ...
        show_progress: draw a progress bar over pairs.
        name: key of this metric in its metric set; error messages point at `metrics.<name>.name_or_path`.
    """

    def __init__(
        self,
        name_or_path: str = "minilm",
        num_layers: int | None = None,
        batch_size: int = 64,
        chunk_size: int = 2048,
        use_fast_tokenizer: bool = False,
        device: str = "auto",
        show_progress: bool = True,
        name: str = "bertscore",
    ) -> None:
        bert_score = require("bert_score", "bert-score>=0.3.13", "BERTScore")
        self.name = name
        self.model_type = resolve_name_or_path(name_or_path)
        if num_layers is None and self.model_type not in bert_score.utils.model2layers:
            raise ValueError(
                f"bert-score has no default layer for {self.model_type!r}: set metrics.{name}.num_layers "
                f"(e.g. two thirds of the model's depth)"
            )
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        self.device = resolve_device(device)
        try:
            self.scorer = bert_score.BERTScorer(
                model_type=self.model_type,
                num_layers=num_layers,
                batch_size=batch_size,
                device=str(self.device),
                use_fast_tokenizer=use_fast_tokenizer,
            )
        except (OSError, ValueError) as error:
            raise checkpoint_error(
                "BERTScore", self.model_type, f"metrics.{name}.name_or_path", error
            ) from error
        self.num_layers = self.scorer.num_layers

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """BERTScore F1 of each candidate against its reference.

        Args:
            candidates: n candidate texts.
            references: n reference texts, aligned with `candidates`.
        Returns:
            n F1 scores.
        """
        check_pairs(candidates, references)
        scores: list[float] = []
        with tqdm(total=len(candidates), desc=self.name, unit="pair", disable=not self.show_progress) as bar:
            for start in range(0, len(candidates), self.chunk_size):
                chunk = slice(start, start + self.chunk_size)
                # verbose=False: bert-score's own bars come with print() lines; ours stands in for them.
                _, _, f1 = self.scorer.score(candidates[chunk], references[chunk], batch_size=self.batch_size)
                scores.extend(f1.tolist())
                bar.update(len(candidates[chunk]))
        return scores
