"""Time the original llm-blender PairRanker's full matrix, driven line by line by `scripts/bench_ranker.py`.

Runs inside the benchmark's own environment (llm-blender 0.0.2 on transformers 4.x, see
`blender/pinned_env.py`), never in blender's: it imports only the standard library, torch and llm_blender.
It loads the ranker and warms it up, prints one JSON line {"ready": ..., versions}, then answers each
"run" on stdin with {"seconds": ...} for one `Blender.rank(..., return_scores=True)` over every record;
"quit" ends it. The library's own prints go to stderr, so stdout carries the JSON lines only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a MiniLM folder (config, weights, tokenizer)")
    parser.add_argument(
        "--records", required=True, help='a JSON file: [{"source": ..., "candidates": [...]}]'
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--source-max-length", type=int, default=128)
    parser.add_argument("--candidate-max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="the fresh head's initial weights")
    args = parser.parse_args()
    protocol = sys.stdout

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with contextlib.redirect_stdout(sys.stderr):
        import transformers
        from llm_blender.blender.blender import Blender
        from llm_blender.blender.config import BlenderConfig

        blender = Blender(BlenderConfig(device="cpu", use_tqdm=False))
        # The original's public loader for a plain MiniLM folder: a fresh PairRanker head on the encoder.
        blender.loadranker(
            args.model_dir,
            device="cpu",
            ranker_type="pairranker",
            model_type="bert",
            model_name=args.model_dir,
            n_tasks=1,
            load_checkpoint=None,
            fp16=False,
            source_maxlength=args.source_max_length,
            candidate_maxlength=args.candidate_max_length,
        )
    with open(args.records, encoding="utf-8") as handle:
        records = json.load(handle)
    inputs = [r["source"] for r in records]
    candidates = [r["candidates"] for r in records]

    def rank(n_records: int) -> float:
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            blender.rank(
                inputs[:n_records],
                candidates[:n_records],
                return_scores=True,
                batch_size=args.batch_size,
                disable_tqdm=True,
            )
        return time.perf_counter() - started

    rank(min(2, len(records)))  # warm-up: thread pools, allocator
    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "llm_blender": importlib.metadata.version("llm-blender"),
    }
    print(
        json.dumps({"ready": True, "threads": torch.get_num_threads(), **versions}), file=protocol, flush=True
    )
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            print(json.dumps({"error": f"unknown command {command!r}"}), file=protocol, flush=True)
            continue
        print(json.dumps({"seconds": rank(len(records))}), file=protocol, flush=True)


if __name__ == "__main__":
    main()
