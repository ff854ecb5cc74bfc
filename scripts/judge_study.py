"""What the judge rewards, and where a pairwise ranker fails to see it: a study of one run's saved val matrix.

1. Oracles: the best candidate overall, and the best within the best model's family only (the models whose
   name starts like the best single model's, e.g. the five FuseChat models): how much there is to gain by
   choosing well inside the family a ranker already prefers.
2. The pick's confusion by model: the model the ranker's pick (MaxLogits) came from, against the model of the
   oracle's best answer, with each picked model's mean oracle score.
3. Pairwise accuracy of the ranker's matrix by kind of pair: same family or not, similar length or not (the
   longer answer at most `--similar-length` times the shorter's characters). A pair counts when the oracle's
   difference exceeds `--min-delta` (the training's tie margin); the ranker's verdict on (i, j) is the sign of
   M[i, j] - M[j, i].

python scripts/judge_study.py outputs/train_ranker/<run>/eval/pair_logits_alpaca_blend_modern_val.npz \
    [--data ../shared/data/alpaca_blend_modern] [--split val] [--out docs/results/judge_study.md]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from blender.aggregation import get_aggregation
from blender.evaluation.ranking import best_model_on, bootstrap_indices, interval, oracle_scores
from blender.files import write_text_atomic
from blender.rankers.saved_scores import load_pair_logits
from blender.records.loading import find_split_file, read_jsonl

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_blend_modern"


def family_of(model: str) -> str:
    """The family a model belongs to: its name up to the first hyphen ("FuseChat-Gemma-2-9B" -> "FuseChat")."""
    return model.split("-", 1)[0]


def ci(values: np.ndarray, indices: np.ndarray) -> str:
    low, high = interval(np.asarray(values, dtype=float), indices)
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def oracle_section(records, truths, picks, best, indices) -> list[str]:
    family = family_of(best)
    in_family = [np.array([family_of(m) == family for m in r.models]) for r in records]
    rows = [
        ("Oracle (all candidates)", [t.max() for t in truths]),
        (
            f"Oracle within {family} ({int(in_family[0].sum())} models)",
            [t[f].max() for t, f in zip(truths, in_family, strict=True)],
        ),
        (
            f"Best single model ({best})",
            [t[r.models.index(best)] for t, r in zip(truths, records, strict=True)],
        ),
        ("Ranker's pick (MaxLogits)", [t[p] for t, p in zip(truths, picks, strict=True)]),
    ]
    lines = ["## 1. How much there is to gain", "", "| Choice | Mean oracle score [95% CI] |", "|---|---|"]
    lines += [f"| {name} | {ci(values, indices)} |" for name, values in rows]
    share = np.mean([f[p] for f, p in zip(in_family, picks, strict=True)])
    lines += ["", f"The ranker's pick is a {family} answer in {100 * share:.0f}% of instructions.", ""]
    return lines


def confusion_section(records, truths, picks) -> list[str]:
    picked = [r.models[p] for r, p in zip(records, picks, strict=True)]
    best_of = [r.models[int(np.argmax(t))] for r, t in zip(records, truths, strict=True)]
    models = sorted(set(picked) | set(best_of), key=lambda m: (-picked.count(m), m))
    counts = Counter(zip(picked, best_of, strict=True))
    short = {m: m.replace("-Instruct", "").replace("FuseChat-", "FC-") for m in models}
    lines = [
        "## 2. Whose answer the ranker picks, against whose answer is best",
        "",
        "Rows: the model of the ranker's pick; columns: the model of the oracle's best answer (ties: the first).",
        "",
        "| Picked \\ best | " + " | ".join(short[m] for m in models) + " | picks | mean oracle of pick |",
        "|---|" + "---|" * (len(models) + 2),
    ]
    for row in models:
        n = picked.count(row)
        quality = (
            np.mean([t[p] for t, p, m in zip(truths, picks, picked, strict=True) if m == row])
            if n
            else float("nan")
        )
        cells = " | ".join(str(counts.get((row, col), 0) or "·") for col in models)
        lines.append(f"| {short[row]} | {cells} | {n} | {'–' if n == 0 else f'{quality:.3f}'} |")
    return [*lines, ""]


def pairwise_section(records, truths, matrices, best, min_delta, similar_length) -> list[str]:
    family = family_of(best)
    buckets: dict[tuple[str, str], list[bool]] = {}
    for record, truth, matrix in zip(records, truths, matrices, strict=True):
        lengths = [len(c.text) for c in record.candidates]
        for i in range(len(truth)):
            for j in range(i + 1, len(truth)):
                if abs(truth[i] - truth[j]) <= min_delta:
                    continue
                same = family_of(record.models[i]) == family_of(record.models[j])
                kind = (
                    f"both {family}"
                    if same and family_of(record.models[i]) == family
                    else ("same family" if same else "different families")
                )
                ratio = max(lengths[i], lengths[j]) / max(1, min(lengths[i], lengths[j]))
                length = (
                    f"similar length (≤ {similar_length:g}×)"
                    if ratio <= similar_length
                    else "different length"
                )
                verdict = matrix[i, j] - matrix[j, i]
                buckets.setdefault((kind, length), []).append(
                    bool(np.sign(verdict) == np.sign(truth[i] - truth[j]))
                )
    lines = [
        "## 3. The ranker's pairwise accuracy by kind of pair",
        "",
        f"Pairs whose oracle difference exceeds {min_delta:g}; accuracy = the share the matrix orders as the oracle does.",
        "",
        "| Pair | Length | Pairs | Accuracy |",
        "|---|---|---|---|",
    ]
    for (kind, length), hits in sorted(buckets.items()):
        lines.append(f"| {kind} | {length} | {len(hits)} | {100 * np.mean(hits):.1f}% |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logits", type=Path, help="a run's eval/pair_logits_<data>_<split>.npz")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--train-split", default="train", help="where the best single model is chosen")
    parser.add_argument("--oracle", default="gpt4_pref")
    parser.add_argument("--min-delta", type=float, default=0.1)
    parser.add_argument("--similar-length", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print it)")
    args = parser.parse_args()

    records = read_jsonl(find_split_file(args.data, args.split))
    saved = load_pair_logits(args.logits)
    if saved.ids != [r.id for r in records] or saved.models != [r.models for r in records]:
        raise SystemExit(
            f"{args.logits}: its matrices are not of {args.data.name} {args.split}'s records, in order"
        )
    best = best_model_on(read_jsonl(find_split_file(args.data, args.train_split)), args.oracle)
    truths = [oracle_scores(r, args.oracle) for r in records]
    max_logits = get_aggregation("max_logits")
    picks = [int(np.argmax(max_logits(m))) for m in saved.matrices]
    indices = bootstrap_indices(len(records))
    lines = [
        f"# What the judge ({args.oracle}) rewards: {args.data.name} {args.split}, {len(records)} instructions",
        "",
        f"From `{args.logits}` (`python scripts/judge_study.py {args.logits}`). Best single model on train: {best}.",
        "",
        *oracle_section(records, truths, picks, best, indices),
        *confusion_section(records, truths, picks),
        *pairwise_section(records, truths, saved.matrices, best, args.min_delta, args.similar_length),
    ]
    text = "\n".join(lines)
    if args.out is None:
        print(text)
    else:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
