"""Diagnostic: how far a linear probe on *frozen* sentence embeddings gets as a pointwise ranker.

Each candidate is embedded alone (mean-pooled last hidden states, L2-normalised, as the sentence-transformers
backbones were trained to be used); the embeddings are centred within their instruction; a ridge regression on
train learns gpt4_pref centred the same way; on val the argmax is the pick, compared with Longest and with the
best single model (chosen on train) by the same paired bootstrap as the ranking report. No encoder weight
moves, so this measures what the pretrained features carry about answer quality, against the fine-tuned
rankers (docs/results/pairranker.md). `--head pairwise` fits the listwise ranker's loss instead of a regression:
a logistic regression on the embedding differences of every decisive pair of an instruction (gap above
`--min-delta`, as training's ties), at C = 1 / alpha, so the same strengths are searched. `--backbone` takes any
ranker backbone name: minilm, mpnet, gemma3-270m (a causal decoder: its states mean-pooled the same way), a folder.
`--extra-train DIR` (pairwise head) adds another dataset's train split to what the head is fitted on: its pairs
judged on `--extra-transform` (logit, as alpaca_blend24's config) with `--extra-min-delta` as its ties; in the
cross-validation only its instructions of the fitting folds join, so no held-out instruction is seen.
`--save-val-scores FILE.npz` keeps the chosen probe's val scores in the report's candidate-scores format, for
`scripts/pool_seeds.py --mix-with` (a fine-tuned ranker's scores stacked with the frozen probe's).

The ridge strength is chosen by 5-fold cross-validation over train's instructions (the top-1 of each held-out
fold), so the "chosen" line never looks at val; the per-strength val lines are printed too, and picking the
best of them on val flatters the probe.

python scripts/probe_frozen_embeddings.py [--data ../shared/data/alpaca_blend_modern] [--backbone mpnet|gemma3-270m]
    [--max-length 256] [--dtype bf16] [--cache outputs/probe] [--head pairwise]
    [--extra-train ../shared/data/alpaca_blend24 [--extra-transform logit] [--extra-min-delta 1.0]]
    [--save-val-scores outputs/probe/minilm_pairwise_val.npz]
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from tqdm import tqdm

from blender.evaluation.model_prior import ModelPrior, cross_fitted_scores, fit_priors
from blender.evaluation.ranking import (
    best_model_on,
    bootstrap_indices,
    interval,
    longest_scores,
    oracle_scores,
)
from blender.files import json_digest, write_bytes_atomic
from blender.rankers.backbone import build_backbone
from blender.rankers.saved_scores import write_candidate_scores
from blender.records.loading import find_split_file, read_jsonl
from blender.records.pairs import signal_matrix

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_blend_modern"


@torch.inference_mode()
def embed(
    texts: list[str], tokenizer, model, max_length: int, batch_size: int = 64, bf16: bool = False
) -> np.ndarray:
    """[len(texts), hidden] L2-normalised mean-pooled embeddings, computed in length-sorted batches."""
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, len(texts), batch_size), desc="embed", unit="batch"):
        rows = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in rows],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def cached_embeddings(texts: list[str], cache: Path | None, key: dict, compute) -> np.ndarray:
    """`compute()` once per (texts, settings): a later run with the same key reads the .npy back."""
    if cache is None:
        return compute()
    path = cache / f"embeddings_{json_digest({**key, 'texts': texts})[:16]}.npy"
    if path.exists():
        print(f"reusing {path}")
        return np.load(path)
    emb = compute()
    buffer = io.BytesIO()
    np.save(buffer, emb)
    cache.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return emb


def centred(records, emb: np.ndarray, oracle: str):
    """Within-instruction centred embeddings [R, N, H], centred oracle targets [R, N], raw oracle [R, N]."""
    emb = emb.reshape(len(records), len(records[0].candidates), -1)
    y = np.stack([oracle_scores(r, oracle) for r in records])
    return emb - emb.mean(1, keepdims=True), y - y.mean(1, keepdims=True), y


@dataclass(frozen=True)
class ExtraTrain:
    """Another dataset's train instructions for the pairwise head: centred embeddings [R, N, H], targets [R, N]
    on its own scale, its tie threshold, and the instruction ids that say which cross-validation folds it joins."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    min_delta: float

    def of(self, ids) -> ExtraTrain:
        """Only the instructions whose id is in `ids`."""
        keep = np.isin(self.ids, list(ids))
        return ExtraTrain(self.ids[keep], self.x[keep], self.y[keep], self.min_delta)


def decisive_pairs(x: np.ndarray, y: np.ndarray, min_delta: float) -> tuple[np.ndarray, np.ndarray]:
    """x_i - x_j and whether i won, for every pair of an instruction whose targets differ by more than
    `min_delta`."""
    first, second = np.triu_indices(x.shape[1], 1)
    gaps = y[:, first] - y[:, second]
    decisive = np.abs(gaps) > min_delta
    return (x[:, first] - x[:, second])[decisive], (gaps[decisive] > 0).astype(int)


def pairwise_probe(
    x_fit: np.ndarray, y_fit: np.ndarray, alpha: float, min_delta: float, extra: tuple[ExtraTrain, ...] = ()
) -> LogisticRegression:
    """Logistic regression on x_i - x_j for every pair of an instruction whose targets differ by more than
    `min_delta` (and every decisive pair of `extra`), both orders (so no intercept is needed): the pairwise
    loss of the listwise ranker, on a linear head."""
    parts = [decisive_pairs(x_fit, y_fit, min_delta)]
    parts += [decisive_pairs(more.x, more.y, more.min_delta) for more in extra if len(more.x)]
    differences = np.concatenate([d for d, _ in parts])
    wins = np.concatenate([w for _, w in parts])
    if not len(wins):
        raise ValueError(f"no pair's targets differ by more than --min-delta {min_delta}: nothing to fit")
    return LogisticRegression(C=1.0 / alpha, fit_intercept=False, max_iter=2000).fit(
        np.concatenate([differences, -differences]), np.concatenate([wins, 1 - wins])
    )


def fit_predict(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_score: np.ndarray,
    alpha: float,
    head: str = "ridge",
    min_delta: float = 0.1,
    extra: tuple[ExtraTrain, ...] = (),
) -> np.ndarray:
    """A linear head fitted on the candidates of `x_fit` (and the pairs of `extra`, pairwise head only); scores
    of `x_score` in its [R, N] shape."""
    flat = x_score.reshape(-1, x_score.shape[-1])
    if head == "pairwise":
        weights = pairwise_probe(x_fit, y_fit, alpha, min_delta, extra).coef_[0]
        return (flat @ weights).reshape(x_score.shape[:2])
    if extra:
        raise ValueError(
            "--extra-train fits the pairwise head only (its targets are on another scale): add --head pairwise"
        )
    probe = Ridge(alpha=alpha).fit(x_fit.reshape(-1, x_fit.shape[-1]), y_fit.reshape(-1))
    return probe.predict(flat).reshape(x_score.shape[:2])


def cross_validated_alpha(
    x: np.ndarray,
    y_centred: np.ndarray,
    y: np.ndarray,
    alphas,
    folds: int = 5,
    ids=None,
    extra: tuple[ExtraTrain, ...] = (),
    **head,
):
    """The strength whose held-out folds' picks score best, over whole instructions; with every strength's mean.
    `head`: fit_predict's head and min_delta. `extra` joins a fold's fit only with the instructions of `ids`
    (x's instruction ids) that the fold fits on."""
    rows = np.arange(len(x))
    ids = np.asarray(ids if ids is not None else rows)
    means = {}
    for alpha in alphas:
        picked = np.zeros(len(x))
        for fit, held in KFold(folds, shuffle=True, random_state=0).split(x):
            fit_extra = tuple(more.of(ids[fit]) for more in extra)
            scores = fit_predict(x[fit], y_centred[fit], x[held], alpha, extra=fit_extra, **head)
            picked[held] = y[rows[held], scores.argmax(1)]
        means[alpha] = float(picked.mean())
    return max(means, key=means.get), means


def extra_train(
    path: Path, val_ids: set[str], features, oracle: str, transform: str, min_delta: float, limit=None
) -> ExtraTrain:
    """`path`'s train split, embedded by `features` and judged on `oracle` after `transform`; an instruction
    that is also in val is an error rather than a leak."""
    records = read_jsonl(find_split_file(path, "train", "--extra-train"), limit=limit)
    leaked = sorted({r.id for r in records} & val_ids)
    if leaked:
        raise ValueError(f"{path}: train instructions {leaked[:5]} are in val too: fitting on them leaks val")
    x, _, _ = features(records)
    y = np.stack([signal_matrix(r, [oracle], transform)[:, 0] for r in records])
    return ExtraTrain(np.array([r.id for r in records]), x, y - y.mean(1, keepdims=True), min_delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--oracle", default="gpt4_pref")
    parser.add_argument("--limit", type=int, default=None, help="first records of each split (a quick check)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0, 10.0, 100.0])
    parser.add_argument(
        "--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast the encoder"
    )
    parser.add_argument("--cache", type=Path, default=None, help="folder to keep the embeddings in")
    parser.add_argument(
        "--head",
        choices=["ridge", "pairwise"],
        default="ridge",
        help="pairwise: logistic over decisive pairs",
    )
    parser.add_argument("--min-delta", type=float, default=0.1, help="pairwise: a gap at or below is a tie")
    parser.add_argument(
        "--extra-train",
        type=Path,
        action="append",
        default=[],
        help="pairwise: also fit on this dataset's train split (repeatable)",
    )
    parser.add_argument(
        "--extra-transform", choices=["none", "logit"], default="logit", help="--extra-train's targets"
    )
    parser.add_argument("--extra-min-delta", type=float, default=1.0, help="--extra-train's ties")
    parser.add_argument(
        "--save-val-scores", type=Path, default=None, help="write the chosen probe's val scores (.npz)"
    )
    args = parser.parse_args()
    if min(args.alphas) <= 0:
        parser.error(
            f"--alphas must be positive (the ridge strength, or 1/C of the pairwise head): {args.alphas}"
        )
    if args.extra_train and args.head != "pairwise":
        parser.error(
            "--extra-train fits the pairwise head only (its targets are on another scale): add --head pairwise"
        )

    def features(records):
        """Centred embeddings, centred oracle, raw oracle (`centred`)."""
        texts = [c.text for r in records for c in r.candidates]
        key = {"backbone": args.backbone, "max_length": args.max_length, "dtype": args.dtype}
        bf16 = args.dtype == "bf16"
        emb = cached_embeddings(
            texts, args.cache, key, lambda: embed(texts, tokenizer, model, args.max_length, bf16=bf16)
        )
        return centred(records, emb, args.oracle)

    try:
        train = read_jsonl(find_split_file(args.data, "train"), limit=args.limit)
        val = read_jsonl(find_split_file(args.data, "val"), limit=args.limit)
        model, tokenizer = build_backbone(args.backbone)
        model.eval()
        x_train, y_train, y_train_raw = features(train)
        x_val, _, y_val = features(val)
        extra = tuple(
            extra_train(
                path,
                {r.id for r in val},
                features,
                args.oracle,
                args.extra_transform,
                args.extra_min_delta,
                args.limit,
            )
            for path in args.extra_train
        )
    except (OSError, ValueError, ImportError) as error:  # ImportError: a packaged backbone not installed
        sys.exit(f"probe_frozen_embeddings: {error}")
    rows = np.arange(len(val))
    longest = y_val[rows, np.stack([longest_scores(r) for r in val]).argmax(1)]
    best_model = best_model_on(train, args.oracle)
    best = np.array([y_val[i, r.models.index(best_model)] for i, r in enumerate(val)])
    indices = bootstrap_indices(len(val))
    head = {"head": args.head, "min_delta": args.min_delta}
    ids = [r.id for r in train]
    try:
        chosen, cv_means = cross_validated_alpha(
            x_train, y_train, y_train_raw, args.alphas, ids=ids, extra=extra, **head
        )
    except ValueError as error:  # e.g. --min-delta above every gap: no pair to fit
        sys.exit(f"probe_frozen_embeddings: {error}")
    print(f"train 5-fold top-1 by alpha: {cv_means}; chosen alpha {chosen:g}")

    def against(picked: np.ndarray, baseline: np.ndarray, name: str) -> str:
        low, high = interval(picked - baseline, indices)
        return f"− {name} {(picked - baseline).mean():+.3f} [{low:+.3f}, {high:+.3f}]"

    for alpha in args.alphas:
        scores = fit_predict(x_train, y_train, x_val, alpha, extra=extra, **head)
        picked = y_val[rows, scores.argmax(1)]
        counts = np.bincount(scores.argmax(1), minlength=len(val[0].models))
        print(
            f"{'chosen ' if alpha == chosen else ''}alpha {alpha:g}: top-1 {args.oracle} {picked.mean():.3f}, "
            f"{against(picked, longest, 'Longest')}, {against(picked, best, best_model)}; "
            f"picks {dict(zip(val[0].models, counts.tolist(), strict=True))}"
        )
        if alpha == chosen:
            chosen_scores = scores
    if args.save_val_scores is not None:
        path = write_candidate_scores(
            args.save_val_scores, [r.id for r in val], [r.models for r in val], list(chosen_scores)
        )
        print(f"the chosen probe's val scores: {path}")
    # The chosen probe with the model prior, its weight cross-fitted over val's two folds as the report's row.
    prior = ModelPrior(fit_priors(train, args.oracle), oracle=args.oracle)
    combined, weights = cross_fitted_scores(prior, list(chosen_scores), val, args.oracle)
    picked = y_val[rows, np.stack(combined).argmax(1)]
    print(
        f"chosen alpha {chosen:g} + model prior (weights {weights}): top-1 {args.oracle} {picked.mean():.3f}, "
        f"{against(picked, best, best_model)}"
    )


if __name__ == "__main__":
    main()
