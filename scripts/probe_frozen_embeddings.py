"""Diagnostic: how far a linear probe on *frozen* MiniLM sentence embeddings gets as a pointwise ranker.

Each candidate is embedded alone (mean-pooled last hidden states, L2-normalised, as all-MiniLM-L6-v2 was
trained to be used); the embeddings are centred within their instruction; a ridge regression on train
learns gpt4_pref centred the same way; on val the argmax is the pick, compared with Longest by the same
paired bootstrap as the ranking report. No encoder weight moves, so this measures what the pretrained
features carry about answer quality, against the fine-tuned PairRanker (docs/results/pairranker.md).

python scripts/probe_frozen_embeddings.py [--data ../shared/data/alpaca_blend_modern] [--max-length 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge
from tqdm import tqdm

from blender.evaluation.ranking import bootstrap_indices, interval, longest_scores, oracle_scores
from blender.rankers.backbone import build_backbone
from blender.records.loading import find_split_file, read_jsonl

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_blend_modern"


@torch.inference_mode()
def embed(texts: list[str], tokenizer, model, max_length: int, batch_size: int = 64) -> np.ndarray:
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
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (model(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def split_features(records, tokenizer, model, max_length: int, oracle: str):
    """Within-instruction centred embeddings [R, N, H], centred oracle targets [R, N], raw oracle [R, N]."""
    n = len(records[0].candidates)
    emb = embed([c.text for r in records for c in r.candidates], tokenizer, model, max_length)
    emb = emb.reshape(len(records), n, -1)
    y = np.stack([oracle_scores(r, oracle) for r in records])
    return emb - emb.mean(1, keepdims=True), y - y.mean(1, keepdims=True), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--oracle", default="gpt4_pref")
    parser.add_argument("--limit", type=int, default=None, help="first records of each split (a quick check)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0])
    args = parser.parse_args()

    model, tokenizer = build_backbone(args.backbone)
    model.eval()
    train = read_jsonl(find_split_file(args.data, "train"), limit=args.limit)
    val = read_jsonl(find_split_file(args.data, "val"), limit=args.limit)
    x_train, y_train, _ = split_features(train, tokenizer, model, args.max_length, args.oracle)
    x_val, _, y_val = split_features(val, tokenizer, model, args.max_length, args.oracle)
    rows = np.arange(len(val))
    longest = y_val[rows, np.stack([longest_scores(r) for r in val]).argmax(1)]
    indices = bootstrap_indices(len(val))
    models = val[0].models
    for alpha in args.alphas:
        probe = Ridge(alpha=alpha).fit(x_train.reshape(-1, x_train.shape[-1]), y_train.reshape(-1))
        scores = probe.predict(x_val.reshape(-1, x_val.shape[-1])).reshape(y_val.shape)
        picked = y_val[rows, scores.argmax(1)]
        low, high = interval(picked - longest, indices)
        counts = np.bincount(scores.argmax(1), minlength=len(models))
        print(
            f"alpha {alpha:g}: top-1 {args.oracle} {picked.mean():.3f}, − Longest {(picked - longest).mean():+.3f} "
            f"[{low:+.3f}, {high:+.3f}]; picks {dict(zip(models, counts.tolist(), strict=True))}"
        )


if __name__ == "__main__":
    main()
