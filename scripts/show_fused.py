"""Fused answers beside the top-K candidates they were written from, as Markdown (for reading, not scoring).

The answers are a seeded random draw from the saved file, not a choice, so what is shown is typical. Each
comes with its instruction, the K candidates the fuser read (model, and the opening words of each), whether it
loops (the same 10-word n-gram three or more times, `blender.fuser.quality.has_loop`) and its length against
the reference's.

python scripts/show_fused.py outputs/train_fuser/<run>/eval/fused_alpaca_blend_modern_val.jsonl \
    [--compare other_fused.jsonl] [--data ../shared/data/alpaca_blend_modern] [--split val] \
    [--count 3] [--seed 0] [--words 60] [--fused-words 300] [--out docs/results/fuser_examples.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from blender.files import read_jsonl_rows, write_text_atomic
from blender.fuser.quality import has_loop
from blender.records.loading import find_split_file, read_jsonl
from blender.records.schema import Record

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_blend_modern"


def opening(text: str, words: int) -> str:
    """The first `words` words of `text` on one line, with " …" when it went on."""
    split = text.split()
    head = " ".join(split[:words])
    return head + (" …" if len(split) > words else "")


def opening_lines(text: str, words: int) -> list[str]:
    """`text`'s lines up to its `words`-th word, with " …" when it went on."""
    kept, count = [], 0
    for line in text.splitlines():
        split = line.split()
        if count + len(split) > words:
            kept.append(" ".join(split[: words - count]) + " …")
            return kept
        kept.append(line)
        count += len(split)
    return kept


def fused_rows(path: Path, records: dict[str, Record]) -> dict[str, dict]:
    """The saved answers by id; an id the split does not hold is an error naming the file."""
    rows = read_jsonl_rows(path)
    for row in rows:
        for key in ("id", "topk_models", "fused"):
            if key not in row:
                raise ValueError(f"{path}: a row has no {key!r} (is this a fused_<data>_<split>.jsonl?)")
        if row["id"] not in records:
            raise ValueError(f"{path}: id {row['id']!r} is not in the split it is shown against")
        unknown = set(row["topk_models"]) - set(records[row["id"]].models)
        if unknown:
            raise ValueError(
                f"{path}: id {row['id']!r} names models the split's record lacks: {sorted(unknown)}"
            )
    return {row["id"]: row for row in rows}


def answer_block(label: str, text: str, reference: str, words: int) -> list[str]:
    """A fused answer with its length against the reference's and whether it loops, quoted line by line."""
    length = len(text.split()) / max(len(reference.split()), 1)
    loop = "loops" if has_loop(text) else "no loop"
    # The whole answer (up to `words`): a loop shows at its end, not in its opening.
    quoted = ["> " + line if line.strip() else ">" for line in opening_lines(text, words)]
    return [f"**{label}** ({len(text.split())} words, {length:.2f}× the reference; {loop}):", "", *quoted, ""]


def render(
    ids: list[str],
    records: dict[str, Record],
    main: dict[str, dict],
    compare: dict[str, dict] | None,
    words: int,
    fused_words: int,
    sources: tuple[str, str | None],
) -> str:
    lines = [f"Answers from `{sources[0]}`" + (f", beside `{sources[1]}`" if sources[1] else "") + ".", ""]
    for n, record_id in enumerate(ids, start=1):
        record, row = records[record_id], main[record_id]
        by_model = {c.model: c.text for c in record.candidates}
        lines += [f"#### {n}. `{record_id}`", "", "> " + opening(record.instruction, words), ""]
        if record.input:
            lines += ["Input: " + opening(record.input, words), ""]
        lines += [f"Top-{len(row['topk_models'])} read by the fuser:", ""]
        for rank, model in enumerate(row["topk_models"], start=1):
            lines.append(
                f"{rank}. *{model}* ({len(by_model[model].split())} words): {opening(by_model[model], words)}"
            )
        lines.append("")
        lines += answer_block("Fused", row["fused"], record.output, fused_words)
        if compare is not None:
            lines += answer_block("Compared", compare[record_id]["fused"], record.output, fused_words)
        lines += [f"Reference ({len(record.output.split())} words): {opening(record.output, words)}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "fused", type=Path, help="a fused_<data>_<split>.jsonl written by make train-fuser / eval"
    )
    parser.add_argument("--compare", type=Path, default=None, help="other answers to the same instructions")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--words", type=int, default=60, help="words shown of the instruction, candidates, reference"
    )
    parser.add_argument("--fused-words", type=int, default=300, help="words shown of each fused answer")
    parser.add_argument("--out", type=Path, default=None, help="write here (atomically); default: stdout")
    args = parser.parse_args()
    try:
        records = {r.id: r for r in read_jsonl(find_split_file(args.data, args.split))}
        main_rows = fused_rows(args.fused, records)
        compare_rows = fused_rows(args.compare, records) if args.compare else None
        if compare_rows is not None and set(compare_rows) != set(main_rows):
            raise ValueError(f"{args.compare} answers other instructions than {args.fused}")
        if not 1 <= args.count <= len(main_rows):
            raise ValueError(f"--count {args.count}: {args.fused} holds {len(main_rows)} answers")
    except (OSError, ValueError) as error:
        sys.exit(f"show_fused: {error}")
    order = sorted(main_rows)
    drawn = np.random.default_rng(args.seed).choice(len(order), size=args.count, replace=False)
    ids = [order[i] for i in sorted(drawn)]
    text = render(
        ids,
        records,
        main_rows,
        compare_rows,
        args.words,
        args.fused_words,
        (str(args.fused), args.compare and str(args.compare)),
    )
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()
