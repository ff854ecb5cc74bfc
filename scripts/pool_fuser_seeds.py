"""How a fuser recipe does over several seeds, not one draw: pool the fused answers of its runs.

Each run's `fused_<data>_<split>.jsonl` (written by `make train-fuser` / `make eval`) holds one answer per
instruction. Every run's answers are scored with the offline reference metrics (conf/metrics/offline.yaml:
BERTScore on the packaged MiniLM, BLEU, ROUGE); per instruction the recipe's value is the mean over the runs
(the expected answer of a run drawn at random among these seeds), with a 95% bootstrap interval over
instructions. Beside it, each run's answer statistics (distinct, % with a 10-gram loop, median length against
the references': `blender.fuser.quality`) and the same statistics over all runs' answers together.

With `--baseline`, one other answer set (the zero-shot fuser's `fused_zero_shot_<data>_<split>.jsonl`, or an
earlier recipe's run) is scored too, and the recipe's paired difference against it: per instruction the runs'
mean minus the baseline's score, bootstrapped over instructions with the same resamples.

python scripts/pool_fuser_seeds.py RUN_A/eval/fused_alpaca_blend_modern_val.jsonl RUN_B/... RUN_C/... \
    [--baseline EVAL/fused_zero_shot_alpaca_blend_modern_val.jsonl] \
    [--data ../shared/data/alpaca_blend_modern] [--split val] [--out docs/results/fuser_seeds.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml

from blender.evaluation.ranking import bootstrap_indices, interval
from blender.files import iter_jsonl, write_json_atomic
from blender.fuser.quality import answer_statistics, has_loop
from blender.metrics.base import build_metrics
from blender.records.loading import find_split_file, read_jsonl

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "alpaca_blend_modern"
METRICS = ("bertscore", "bleu", "rougeL")


def read_answers(path: Path, ids: list[str]) -> list[str]:
    """The answers of `path` in the order of `ids`; an error naming the file when its ids differ."""
    by_id = {}
    for line_no, row in iter_jsonl(path):
        for field in ("id", "fused"):
            if not isinstance(row.get(field), str):
                raise ValueError(
                    f"{path}:{line_no}: no {field!r} field (a string): not a file of fused answers "
                    "(make eval writes <eval dir>/fused_<data>_<split>.jsonl)"
                )
        by_id[row["id"]] = row["fused"]
    missing = [i for i in ids if i not in by_id]
    if missing or len(by_id) != len(ids):
        raise ValueError(
            f"{path}: {len(by_id)} answers for {len(ids)} records ({len(missing)} ids missing, e.g. "
            f"{missing[:3]}): fused answers of another split or a partial run"
        )
    return [by_id[i] for i in ids]


def pooled_metrics(scores: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per metric ([runs, instructions] scores): the mean over runs of each instruction, then its mean over
    instructions with a 95% bootstrap interval over instructions (the same resamples as Table 2's).

    Example: two runs scoring [1, 0] and [0, 1] give 0.5 for each instruction: mean 0.5, interval [0.5, 0.5].
    """
    pooled = {}
    for name, values in scores.items():
        per_instruction = values.mean(axis=0)
        low, high = interval(per_instruction, bootstrap_indices(len(per_instruction), n_boot, seed))
        pooled[name] = {"mean": float(per_instruction.mean()), "ci": [low, high]}
    return pooled


def paired_difference(
    scores: dict[str, np.ndarray], baseline: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Per metric: each instruction's mean over the runs ([runs, instructions]) minus the baseline's score on it
    ([instructions]), then the mean over instructions with a 95% bootstrap interval over instructions. Paired:
    what varies by instruction (an easy one, a long reference) cancels before the resampling.

    Example: runs scoring [10.0, 0.1] against a baseline's [9.9, 0.0] differ by 0.1 on both: interval
    [0.1, 0.1], though the two sets' own intervals overlap.
    """
    differences = {}
    for name, values in scores.items():
        per_instruction = values.mean(axis=0) - baseline[name]
        low, high = interval(per_instruction, bootstrap_indices(len(per_instruction), n_boot, seed))
        differences[name] = {
            "mean": float(per_instruction.mean()),
            "ci": [low, high],
            "above_zero": bool(low > 0),
        }
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", nargs="+", type=Path, help="fused_<data>_<split>.jsonl of each run")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another answer set to compare against, paired by instruction",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    try:
        records = read_jsonl(find_split_file(args.data, args.split))
        ids = [r.id for r in records]
        runs = [read_answers(path, ids) for path in args.answers]
        baseline = read_answers(args.baseline, ids) if args.baseline is not None else None
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    references = [r.output for r in records]
    metric_set = yaml.safe_load((REPO / "conf" / "metrics" / "offline.yaml").read_text())
    metrics = build_metrics({name: metric_set[name] for name in METRICS})

    scores = {
        name: np.array([metric.score(run, references) for run in runs]) for name, metric in metrics.items()
    }
    result: dict = {"runs": [str(p) for p in args.answers], "data": str(args.data), "split": args.split}
    result["per_run"] = [
        {
            "answers": str(path),
            **{name: float(scores[name][k].mean()) for name in METRICS},
            **answer_statistics(run, references).as_dict(),
        }
        for k, (path, run) in enumerate(zip(args.answers, runs, strict=True))
    ]
    pooled = pooled_metrics(scores)
    every = [answer for run in runs for answer in run]
    pooled["loop_pct"] = 100.0 * sum(has_loop(a) for a in every) / len(every)
    pooled["median_words"] = float(statistics.median(len(a.split()) for a in every))
    pooled["length_ratio"] = pooled["median_words"] / statistics.median(len(r.split()) for r in references)
    pooled["distinct_per_run_min"] = min(r["n_distinct"] for r in result["per_run"])
    result["pooled"] = pooled
    if baseline is not None:
        baseline_scores = {
            name: np.asarray(metric.score(baseline, references)) for name, metric in metrics.items()
        }
        result["baseline"] = {
            "answers": str(args.baseline),
            **pooled_metrics({name: values[None, :] for name, values in baseline_scores.items()}),
            **answer_statistics(baseline, references).as_dict(),
        }
        result["difference_to_baseline"] = paired_difference(scores, baseline_scores)

    print(f"{len(runs)} runs, {len(records)} {args.split} instructions")
    print("| run | BERTScore | BLEU | ROUGE-L | distinct | loops % | median words | length / refs' |")
    print("|---|---|---|---|---|---|---|---|")
    for row in result["per_run"]:
        print(
            f"| {row['answers']} | {100 * row['bertscore']:.2f} | {row['bleu']:.2f} | {row['rougeL']:.3f} | "
            f"{row['n_distinct']} | {row['loop_pct']:.0f} | {row['median_words']:.0f} | {row['length_ratio']:.3f} |"
        )
    b, u, r = pooled["bertscore"], pooled["bleu"], pooled["rougeL"]
    print(
        f"| pooled | {100 * b['mean']:.2f} [{100 * b['ci'][0]:.2f}, {100 * b['ci'][1]:.2f}] | "
        f"{u['mean']:.2f} [{u['ci'][0]:.2f}, {u['ci'][1]:.2f}] | {r['mean']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | "
        f"≥ {pooled['distinct_per_run_min']} | {pooled['loop_pct']:.1f} | {pooled['median_words']:.0f} | "
        f"{pooled['length_ratio']:.3f} |"
    )
    if baseline is not None:
        base, diff = result["baseline"], result["difference_to_baseline"]
        scale = {"bertscore": 100.0, "bleu": 1.0, "rougeL": 1.0}
        print(f"\nagainst {args.baseline} ({base['n_distinct']} distinct, {base['loop_pct']:.0f} % loops):")
        print("| metric | baseline | pooled − baseline (paired) | interval above zero |")
        print("|---|---|---|---|")
        for name in METRICS:
            k, b, d = scale[name], base[name], diff[name]
            print(
                f"| {name} | {k * b['mean']:.3f} [{k * b['ci'][0]:.3f}, {k * b['ci'][1]:.3f}] | "
                f"{k * d['mean']:+.3f} [{k * d['ci'][0]:+.3f}, {k * d['ci'][1]:+.3f}] | "
                f"{'yes' if d['above_zero'] else 'no'} |"
            )
    if args.out is not None:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
