"""Quality against forward passes for the budgeted ranking schemes, and seconds per instruction against N.

Curves: every scheme of `blender.ranking_schemes` replayed on saved full matrices (a trained ranker's
eval/pair_logits_<data>_<split>.npz) at a grid of budgets, several seeds (the schemes' random draws), top-1
mean oracle score of the pick against the mean forward passes actually run; the full matrix's MaxLogits is
the reference point. Replaying reads the entries the scheme would have computed, so the picks are the ones
an online run makes.

Timing (--timing): full matrix, bubble and one chosen scheme run online on the first instructions of a
split with their first N candidates, N = 2 … 24: wall seconds per instruction (a fresh MiniLM head, whose
weights do not change speed). A timing needs a quiet machine.

    python scripts/ranking_schemes.py \
        --curve alpaca_blend24=outputs/train_ranker/<run>/eval/pair_logits_alpaca_blend24_val.npz \
        --curve alpaca_blend_modern=<demo run>/eval/pair_logits_alpaca_blend_modern_val.npz --timing

Writes <out>/ranking_schemes_{curves,timing}.json, ranking_schemes_tables.md and the PNGs beside them.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_ranker import fresh_ranker_at_original_settings

from blender.aggregation import max_logits, one_order_matrix
from blender.evaluation.ranking import bootstrap_indices, model_means, oracle_scores
from blender.files import write_bytes_atomic, write_json_atomic, write_text_atomic
from blender.rankers import InferenceSettings, full_matrices
from blender.rankers.predict import bubble_scores_online, orientation_seed, scheme_scores_online
from blender.rankers.saved_scores import load_pair_logits
from blender.ranking_schemes import min_passes, replay_scheme
from blender.records import load_candidates

log = logging.getLogger("ranking_schemes")

# (label, scheme, orders, references): "train order" takes the candidates by their model's mean oracle score
# on train as references (the best model's answer first), a prior the other schemes do not use.
VARIANTS = [
    ("bubble", "bubble", "both", False),
    ("knockout", "knockout", "both", False),
    ("swiss", "swiss", "both", False),
    ("reference", "reference", "both", False),
    ("reference, train order", "reference", "both", True),
    ("top_k", "top_k", "both", False),
    ("top_k, train order", "top_k", "both", True),
    ("swiss, one order", "swiss", "one", False),
    ("reference, one order", "reference", "one", False),
    ("top_k, one order", "top_k", "one", False),
]
FRACTIONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0)  # of N(N−1); 0: the scheme's smallest


def load_saved(path: Path, records) -> list[np.ndarray]:
    saved = load_pair_logits(path)  # the evaluation's own format (ids, models, one matrix per record)
    if list(saved.ids) != [r.id for r in records]:
        raise ValueError(f"{path}: its matrices are of other records than the {len(records)} loaded")
    return [np.asarray(m, dtype=np.float64) for m in saved.matrices]


def top1(scores, truths) -> np.ndarray:
    """Per instruction, the oracle score of the pick (argmax of the scores)."""
    return np.array([t[int(np.argmax(s))] for s, t in zip(scores, truths, strict=True)])


def curve(name: str, npz: Path, data: Path, split: str, oracle: str, seeds: int, bootstrap: int) -> dict:
    (train, records) = load_candidates(data, splits=("train", split))
    matrices = load_saved(npz, records)
    truths = [oracle_scores(r, oracle) for r in records]
    n = len(records[0].candidates)
    if any(len(r.candidates) != n for r in records):
        raise ValueError(f"{data}: the curves assume one candidate count per instruction")
    full_passes = n * (n - 1)
    full = top1([max_logits(m) for m in matrices], truths)
    one_order = top1(
        [
            max_logits(one_order_matrix(m, orientation_seed(r.id)))
            for m, r in zip(matrices, records, strict=True)
        ],
        truths,
    )
    means = model_means(train, oracle)
    train_order = [[r.models.index(m) for m in means if m in r.models] for r in records]
    resamples = bootstrap_indices(len(records), bootstrap, 0)
    points = []
    for label, scheme, orders, prior in VARIANTS:
        smallest = min_passes(scheme, n, orders)
        budgets = sorted({max(smallest, round(f * full_passes)) for f in FRACTIONS})
        for budget in budgets:
            picks, passes = [], []
            for seed in range(seeds):
                result = replay_scheme(matrices, scheme, budget, orders, seed, train_order if prior else None)
                picks.append(top1(result.scores, truths))
                passes.append(np.mean(result.passes))
            per_seed = np.array([p.mean() for p in picks])
            pooled = np.mean(picks, axis=0)  # per instruction, over seeds
            difference = pooled - full
            low, high = np.percentile(difference[resamples].mean(axis=1), [2.5, 97.5])
            points.append(
                {
                    "variant": label,
                    "scheme": scheme,
                    "orders": orders,
                    "train_order": prior,
                    "budget": budget,
                    "passes": float(np.mean(passes)),
                    "passes_share": float(np.mean(passes)) / full_passes,
                    "top1": float(per_seed.mean()),
                    "top1_seed_sd": float(per_seed.std(ddof=1)) if seeds > 1 else 0.0,
                    "minus_full": float(difference.mean()),
                    "minus_full_ci": [float(low), float(high)],
                }
            )
        log.info("%s: %s done", name, label)
    return {
        "name": name,
        "matrices": str(npz),
        "data": f"{data} [{split}]",
        "instructions": len(records),
        "candidates": n,
        "oracle": oracle,
        "seeds": list(range(seeds)),
        "full_passes": full_passes,
        "full_top1": float(full.mean()),
        "one_order_full_top1": float(one_order.mean()),
        "random_top1": float(np.mean([t.mean() for t in truths])),
        "points": points,
    }


def best_within(curve_result: dict, share: float = 0.25) -> dict | None:
    inside = [p for p in curve_result["points"] if p["passes_share"] <= share + 1e-9]
    return max(inside, key=lambda p: p["top1"]) if inside else None


def timing(
    data: Path, split: str, instructions: int, sizes: list[int], best: tuple[str, str, float], threads: int
) -> dict:
    torch.set_num_threads(threads)
    (records,) = load_candidates(data, splits=(split,), limit=instructions)
    ranker = fresh_ranker_at_original_settings()
    settings = InferenceSettings(precision="fp32", show_progress=False)
    scheme, orders, fraction = best
    full_matrices(ranker, records[:1], settings)  # warm-up
    rows = []
    for n in sizes:
        subset = [replace(r, candidates=r.candidates[:n]) for r in records]
        budget = max(min_passes(scheme, n, orders), round(fraction * n * (n - 1)))
        label = f"{scheme} ({orders}, {fraction:.0%})"
        row = {"n": n}
        for name in ("full", "bubble", label):
            started = time.perf_counter()
            if name == "full":
                full_matrices(ranker, subset, settings)
            elif name == "bubble":
                bubble_scores_online(ranker, subset, settings)
            else:
                scheme_scores_online(ranker, subset, scheme, budget, orders, settings)
            row[name] = (time.perf_counter() - started) / len(subset)
        rows.append(row)
        log.info("N=%d: %s", n, {k: round(v, 2) for k, v in row.items() if k != "n"})
    return {
        "data": f"{data} [{split}], first {len(records)} instructions, first N candidates",
        "model": "packaged all-MiniLM-L6-v2 + fresh head, 128/128/128, fp32",
        "threads": threads,
        "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }


def plot_curves(curves: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.8), squeeze=False)
    for ax, result in zip(axes[0], curves, strict=True):
        for label in dict.fromkeys(p["variant"] for p in result["points"]):
            points = [p for p in result["points"] if p["variant"] == label]
            style = "--" if "one order" in label else ":" if "train order" in label else "-"
            ax.plot(
                [p["passes"] for p in points], [p["top1"] for p in points], style, marker=".", label=label
            )
        full = result["full_top1"]
        ax.plot([result["full_passes"]], [full], "k*", markersize=14, label="full matrix (MaxLogits)")
        ax.axhspan(full - 0.01, full + 0.01, color="0.85", zorder=0)
        ax.axvline(0.25 * result["full_passes"], color="0.5", lw=0.8)
        ax.axhline(result["random_top1"], color="0.6", lw=0.8, ls="-.")
        ax.set_xscale("log")
        ax.set_xlabel("forward passes per instruction (log; grey line: 25% of the full matrix)")
        ax.set_ylabel(f"top-1 {result['oracle']} (mean of the pick)")
        ax.set_title(
            f"{result['name']} {result['data'].split('[')[-1].rstrip(']')}: N={result['candidates']}, "
            f"{result['instructions']} instructions, {len(result['seeds'])} seeds"
        )
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def plot_timing(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sizes = [row["n"] for row in result["rows"]]
    for label in [k for k in result["rows"][0] if k != "n"]:
        ax.plot(sizes, [row[label] for row in result["rows"]], marker="o", label=label)
    ax.set_xlabel("candidates per instruction (N)")
    ax.set_ylabel("seconds per instruction")
    ax.set_title(f"online ranking time, {result['model']}, {result['threads']} threads")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def tables(curves: list[dict], timing_result: dict | None) -> str:
    lines = ["# Budgeted ranking schemes: tables (written by scripts/ranking_schemes.py)", ""]
    for result in curves:
        lines += [
            f"## {result['name']} ({result['data']}, N = {result['candidates']}, full matrix "
            f"{result['full_passes']} passes)",
            "",
            f"Full matrix (MaxLogits): top-1 {result['oracle']} {result['full_top1']:.4f}; one order of each "
            f"pair ({result['full_passes'] // 2} passes): {result['one_order_full_top1']:.4f}; random pick "
            f"{result['random_top1']:.4f}. Seeds {result['seeds']}; the interval is a 95% paired bootstrap over "
            f"instructions of (scheme, mean over seeds) − full.",
            "",
            "| scheme | budget | passes (mean) | share of full | top-1 | sd over seeds | − full [95% CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in result["points"]:
            low, high = p["minus_full_ci"]
            lines.append(
                f"| {p['variant']} | {p['budget']} | {p['passes']:.1f} | {p['passes_share']:.1%} | "
                f"{p['top1']:.4f} | {p['top1_seed_sd']:.4f} | {p['minus_full']:+.4f} [{low:+.4f}, {high:+.4f}] |"
            )
        best = best_within(result)
        if best:
            lines += [
                "",
                f"Best at ≤ 25% of the passes: {best['variant']}, budget {best['budget']} "
                f"({best['passes']:.1f} passes, {best['passes_share']:.1%}): {best['top1']:.4f}, "
                f"{best['minus_full']:+.4f} from the full matrix.",
            ]
        lines.append("")
    if timing_result:
        labels = [k for k in timing_result["rows"][0] if k != "n"]
        lines += [
            "## Seconds per instruction against N (online)",
            "",
            f"{timing_result['data']}; {timing_result['model']}; {timing_result['threads']} threads; load "
            f"average {', '.join(f'{x:.2f}' for x in timing_result['load_average'])} at the end.",
            "",
            "| N | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for row in timing_result["rows"]:
            lines.append(f"| {row['n']} | " + " | ".join(f"{row[k]:.2f}" for k in labels) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curve", action="append", default=[], help="NAME=path/to/pair_logits_NAME_val.npz")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--split", default="val")
    parser.add_argument("--oracle", default="gpt4_pref")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--timing", action="store_true", help="also time full, bubble and --best online against N"
    )
    parser.add_argument("--timing-data", default="../shared/data/alpaca_blend24")
    parser.add_argument("--timing-instructions", type=int, default=4)
    parser.add_argument("--sizes", default="2,4,8,12,16,20,24")
    parser.add_argument(
        "--best", default=None, help="SCHEME:ORDERS:FRACTION to time; default the best curve point"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    curves_file = out / "ranking_schemes_curves.json"
    curves = []
    for spec in args.curve:
        name, _, npz = spec.partition("=")
        curves.append(
            curve(
                name,
                Path(npz),
                Path(args.data_root) / name,
                args.split,
                args.oracle,
                args.seeds,
                args.bootstrap,
            )
        )
    if curves:
        write_json_atomic(curves_file, curves)
        write_bytes_atomic(out / "ranking_schemes_quality.png", plot_curves(curves))
    elif curves_file.is_file():
        curves = json.loads(curves_file.read_text())
    timing_result = None
    if args.timing:
        if args.best:
            scheme, orders, fraction = args.best.split(":")
            best = (scheme, orders, float(fraction))
        else:
            point = best_within(curves[0])
            best = (point["scheme"], point["orders"], point["budget"] / curves[0]["full_passes"])
        sizes = [int(s) for s in args.sizes.split(",")]
        timing_result = timing(
            Path(args.timing_data), args.split, args.timing_instructions, sizes, best, args.threads
        )
        write_json_atomic(out / "ranking_schemes_timing.json", timing_result)
        write_bytes_atomic(out / "ranking_schemes_seconds.png", plot_timing(timing_result))
    elif (out / "ranking_schemes_timing.json").is_file():
        timing_result = json.loads((out / "ranking_schemes_timing.json").read_text())
    write_text_atomic(out / "ranking_schemes_tables.md", tables(curves, timing_result))
    log.info("wrote %s", out / "ranking_schemes_tables.md")


if __name__ == "__main__":
    main()
