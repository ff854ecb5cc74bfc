"""Benchmark PairRanker full-matrix ranking speed, padding and batch invariance (`make bench`).

Setting of the issue's reference figures: MiniLM, 128/128/128 tokens, fp32, 2 threads, alpaca_blend val.
Weights do not change speed, so the packaged MiniLM with a fresh head is used; pass --checkpoint to time
a trained one. Results go to bench/ranker_speed.{json,md} (written atomically).
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from blender.data import load_candidates
from blender.files import write_json_atomic, write_text_atomic
from blender.rankers import InferenceSettings, PairRanker, build_backbone, encode_records, full_matrices
from blender.rankers.predict import length_sorted_batches

log = logging.getLogger("bench_ranker")


def padding_share(ranker: PairRanker, records, settings: InferenceSettings) -> tuple[float, float]:
    """Share of padded positions with our length-sorted batches, and with batches in input order."""
    encoded = encode_records(ranker, records)
    lengths = [
        len(ranker.encoder.pair_ids(encoded[e], i, j))
        for e, r in enumerate(records)
        for i in range(len(r.candidates))
        for j in range(len(r.candidates))
        if i != j
    ]
    real = sum(lengths)

    def padded(batches):
        return sum(len(b) * max(lengths[k] for k in b) for b in batches)

    ours = padded(length_sorted_batches(lengths, settings.max_tokens, settings.max_batch_size))
    size = settings.max_batch_size
    unsorted = padded([list(range(s, min(s + size, len(lengths)))) for s in range(0, len(lengths), size)])
    return 1 - real / ours, 1 - real / unsorted


def time_full_matrix(ranker: PairRanker, records, settings: InferenceSettings, repeats: int) -> float:
    """Pair forward passes per second for the full matrix (best of `repeats` after one warm-up)."""
    full_matrices(ranker, records[:2], settings)  # warm-up: thread pools, allocator
    n_pairs = sum(len(r.candidates) * (len(r.candidates) - 1) for r in records)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        full_matrices(ranker, records, settings)
        best = min(best, time.perf_counter() - started)
    return n_pairs / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/alpaca_blend")
    parser.add_argument("--split", default="val")
    parser.add_argument("--records", type=int, default=20, help="instructions to rank (110 pairs each)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=16384)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--out", default="bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    (records,) = load_candidates(args.data, splits=(args.split,), limit=args.records)
    if args.checkpoint:
        ranker = PairRanker.load(args.checkpoint)
    else:
        backbone, tokenizer = build_backbone("minilm")
        ranker = PairRanker(backbone, tokenizer, task_names=["gpt4_pref"]).eval()
    results = {
        "data": f"{args.data} [{args.split}], first {len(records)} instructions",
        "model": args.checkpoint or "packaged all-MiniLM-L6-v2 + fresh head",
        "lengths": "source 128 / candidate 128 / candidate 128",
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
    }
    for precision in ("no", "bf16"):
        settings = InferenceSettings(args.max_tokens, args.max_batch_size, precision, show_progress=False)
        rate = time_full_matrix(ranker, records, settings, args.repeats)
        results[f"pairs_per_second_{'fp32' if precision == 'no' else precision}"] = rate
        log.info("%s: %.1f pair forward passes per second", precision, rate)
    settings = InferenceSettings(args.max_tokens, args.max_batch_size, "no", show_progress=False)
    ours, unsorted = padding_share(ranker, records, settings)
    results["padding_share_length_sorted"] = ours
    results["padding_share_unsorted_batches"] = unsorted

    # Batch invariance: the same pairs in batches of 1, 8 and 32 (fp32).
    subset = records[:3]
    reference = full_matrices(ranker, subset, InferenceSettings(max_batch_size=1, show_progress=False))
    worst = 0.0
    for size in (8, 32):
        other = full_matrices(ranker, subset, InferenceSettings(max_batch_size=size, show_progress=False))
        worst = max(worst, max(float(np.abs(a - b).max()) for a, b in zip(reference, other, strict=True)))
    results["max_abs_logit_difference_batch_1_vs_8_vs_32"] = worst

    out = Path(args.out)
    write_json_atomic(out / "ranker_speed.json", results)
    lines = ["# PairRanker ranking speed (make bench)", ""] + [f"- {k}: {v}" for k, v in results.items()]
    write_text_atomic(out / "ranker_speed.md", "\n".join(lines) + "\n")
    log.info("wrote %s", out / "ranker_speed.json")


if __name__ == "__main__":
    main()
