"""Time BERTScore on alpaca_blend's validation split: every candidate against its reference (100 x 11 pairs).

python scripts/bench_bertscore.py [--limit 100] [--device auto] [--num-layers 5] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from blender.metrics import BERTScore

log = logging.getLogger("bench_bertscore")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_blend" / "val.jsonl"


def main() -> None:
    """Score the split once and log pairs per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=100, help="records (each with 11 candidates)")
    parser.add_argument("--name-or-path", default="minilm")
    parser.add_argument("--num-layers", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    records = [json.loads(line) for line in args.data.read_text().splitlines()[: args.limit]]
    candidates = [candidate["text"] for record in records for candidate in record["candidates"]]
    references = [record["output"] for record in records for _ in record["candidates"]]
    started = time.perf_counter()
    metric = BERTScore(
        args.name_or_path, num_layers=args.num_layers, batch_size=args.batch_size, device=args.device
    )
    loaded = time.perf_counter()
    scores = metric.score(candidates, references)
    done = time.perf_counter()
    log.info(
        "%d pairs on %s (%d torch threads): load %.1fs, score %.1fs (%.1f pairs/s), mean F1 %.4f",
        len(scores),
        metric.device,
        torch.get_num_threads(),
        loaded - started,
        done - loaded,
        len(scores) / (done - loaded),
        sum(scores) / len(scores),
    )


if __name__ == "__main__":
    main()
