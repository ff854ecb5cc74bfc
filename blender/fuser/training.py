"""Train a GenFuser with the shared Accelerate loop: top-K candidates in, the reference answer out."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from blender.distributed import map_sharded
from blender.fuser.model import IGNORE_INDEX, GenFuser
from blender.fuser.packing import truncate_candidate
from blender.records.schema import Record
from blender.training.loop import LoggerSettings, TrainSettings, fit

log = logging.getLogger(__name__)


@dataclass
class FuserExample:
    """One instruction with its top-K candidates (rank order, already cut to the candidate budget)."""

    instruction: str
    input: str
    candidates: list[str]
    target: str


def fuser_examples(
    fuser: GenFuser, records: Sequence[Record], rankings: Sequence[Sequence[int]], k: int
) -> list[FuserExample]:
    """The K best candidates of each record by `rankings` (best first), each cut once to its token budget."""
    if len(records) != len(rankings):
        raise ValueError(f"{len(records)} records but {len(rankings)} rankings")
    examples = []
    for record, ranking in zip(records, rankings, strict=True):
        texts = [
            truncate_candidate(fuser.tokenizer, record.candidates[i].text, fuser.packing) for i in ranking[:k]
        ]
        examples.append(FuserExample(record.instruction, record.input, texts, record.output))
    return examples


def encode_examples(
    fuser: GenFuser, examples: Sequence[FuserExample], rng: np.random.Generator | None = None
) -> list[dict[str, list[int]]]:
    """Token ids of each example; with `rng`, the K candidates are shuffled first (the original's training
    data; at inference they stay in rank order)."""
    encoded = []
    for example in examples:
        candidates = list(example.candidates)
        if rng is not None:
            candidates = [candidates[i] for i in rng.permutation(len(candidates))]
        encoded.append(fuser.encode(example.instruction, example.input, candidates, example.target))
    return encoded


class FuserBatches(Sequence):
    """One epoch's micro-batches: examples grouped by length (HF's group_by_length), collated on access."""

    def __init__(
        self, fuser: GenFuser, encoded: Sequence[dict[str, list[int]]], batch_size: int, seed: int
    ) -> None:
        rng = np.random.default_rng(seed)
        self.fuser, self.encoded = fuser, encoded
        lengths = [len(e["input_ids"]) + len(e["labels"]) for e in encoded]
        order = rng.permutation(len(encoded))
        mega = batch_size * 16
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda k: lengths[k])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        self.batches = [batches[k] for k in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        # A causal LM's batch is left-padded, so every row's answer ends at the last position (causal_loss).
        return self.fuser.collate(
            [self.encoded[k] for k in self.batches[index]], left_pad=self.fuser.is_causal
        )


def fuser_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Token-mean cross-entropy of the target (causal LMs: of the answer only; the prompt is labelled −100)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, {"target_tokens": float((batch["labels"] != IGNORE_INDEX).sum())}


def causal_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """`fuser_loss` for a decoder-only LM on a left-padded batch, with logits for the answer positions only.

    Every row's answer ends at the last position, so the widest answer (A tokens) lies in the last A positions
    of every row, and the model computes logits for the last A + 1 positions only (`logits_to_keep`): the
    output projection over Gemma's 262k-token vocabulary is otherwise the costliest matmul of a step, and the
    prompt's positions carry no loss. Positions count from each row's first real token.
    """
    labels, mask = batch["labels"], batch["attention_mask"]
    answer = labels != IGNORE_INDEX
    width = int(answer.int().flip(-1).cumprod(-1).sum(-1).max()) if answer.any() else 1
    # Rows whose answer is not at the end (not left-padded) would be scored on the wrong positions.
    if answer.any() and int(answer.sum()) != int(answer[:, labels.shape[1] - width :].sum()):
        raise ValueError("causal_loss needs left-padded batches whose labels are the last tokens of each row")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, logits_to_keep=width + 1
    )
    # logits[:, i] predicts the token after position L - width - 1 + i, i.e. labels[:, L - width + i].
    logits = out.logits[:, :-1].float()
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels[:, labels.shape[1] - width :].reshape(-1),
        ignore_index=IGNORE_INDEX,
    )
    return loss, {"target_tokens": float(answer.sum())}


def loss_for(fuser: GenFuser):
    """The training loss of `fuser`'s kind: `causal_loss` for a decoder-only LM, else `fuser_loss`."""
    return causal_loss if fuser.is_causal else fuser_loss


@torch.inference_mode()
def validation_loss(
    fuser: GenFuser, model: nn.Module, encoded: Sequence[dict[str, list[int]]], batch_size: int
) -> float:
    """Target-token mean loss over the validation examples (candidates in rank order).

    Under a launched run each process runs its share of the (length-sorted) batches; the sums are gathered, so
    every process gets the loss one process would have."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda k: len(encoded[k]["input_ids"]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    loss_fn = loss_for(fuser)

    def sums(part: Sequence[list[int]]) -> list[tuple[float, int]]:
        out = []
        for rows in part:
            batch = fuser.collate([encoded[k] for k in rows], left_pad=fuser.is_causal)
            loss, logs = loss_fn(model, {k: v.to(device) for k, v in batch.items()})
            out.append((loss.item() * logs["target_tokens"], int(logs["target_tokens"])))
        return out

    per_batch = map_sharded(sums, batches, "validation batches")
    model.train(was_training)
    total, tokens = sum(t for t, _ in per_batch), sum(n for _, n in per_batch)
    return total / max(tokens, 1)


def train_fuser(
    fuser: GenFuser,
    train_examples: Sequence[FuserExample],
    val_examples: Sequence[FuserExample],
    settings: TrainSettings,
    output_dir: str | os.PathLike,
    shuffle_candidates: bool = True,
    logger: LoggerSettings | None = None,
    run_config: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit the fuser on (top-K, reference) pairs; keep the checkpoint with the lowest val loss in `best`.

    Args:
        fuser: the model to train (its `model` is updated in place).
        train_examples: training examples (candidates in rank order; shuffled per epoch when asked).
        val_examples: validation examples (rank order).
        settings: optimisation settings (`trainer.best_metric` "val/loss", `best_mode` "min").
        output_dir: the run folder.
        shuffle_candidates: shuffle the K candidates of each training example every epoch (the original).
        logger: experiment tracking.
        run_config: the resolved config, stored with the tracker.
        fingerprint: the settings that shape the run (see `fit`): a resume under other ones is refused.
    Returns:
        The loop's summary.
    """
    val_encoded = encode_examples(fuser, val_examples)

    @functools.lru_cache(
        maxsize=1
    )  # the loop asks for an epoch's batches more than once (counting, resuming)
    def epoch_batches(epoch: int) -> FuserBatches:
        rng = np.random.default_rng(settings.seed + epoch) if shuffle_candidates else None
        encoded = encode_examples(fuser, train_examples, rng)
        return FuserBatches(fuser, encoded, settings.batch_size, seed=settings.seed + epoch)

    first = epoch_batches(0)
    lengths = [len(e["input_ids"]) for e in first.encoded]
    log.info(
        "%d training examples in %d batches of %d; source tokens mean %.0f, max %d",
        len(first.encoded),
        len(first),
        settings.batch_size,
        float(np.mean(lengths)),
        max(lengths),
    )

    def evaluate(model: nn.Module) -> dict[str, float]:
        started = time.perf_counter()
        loss = validation_loss(fuser, model, val_encoded, settings.batch_size)
        return {"val/loss": loss, "val/seconds": time.perf_counter() - started}

    return fit(
        fuser.model,
        loss_for(fuser),
        epoch_batches,
        settings,
        output_dir,
        evaluate=evaluate if val_examples else None,
        save_model=lambda model, directory: fuser.save(Path(directory), model=model),
        logger=logger,
        run_config=run_config,
        fingerprint=fingerprint,
        val_metrics=["val/loss", "val/seconds"],
    )


__all__ = [
    "causal_loss",
    "FuserBatches",
    "FuserExample",
    "encode_examples",
    "fuser_examples",
    "fuser_loss",
    "train_fuser",
    "validation_loss",
]
