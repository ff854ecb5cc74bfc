"""Write prompt / chosen / rejected pairs (TRL's preference format) from MixInstruct-style records.

    python scripts/make_preference_pairs.py --data ../shared/data/alpaca_blend --out tests/fixtures/preference \
        --train 32 --val 16 --max-chars 1200

For each record in file order: chosen is the candidate with the highest `--signal` (gpt4_pref: GPT-4-turbo's
preference over its reference), rejected the one with the lowest; records whose best and worst tie, or whose
two answers are longer than `--max-chars`, are skipped. The first `--train` pairs of train.jsonl and `--val`
of val.jsonl are written as <out>/train.jsonl and <out>/val.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from blender.files import write_jsonl_atomic
from blender.records import read_jsonl


def pairs(path: Path, signal: str, max_chars: int, limit: int) -> list[dict]:
    rows = []
    for record in read_jsonl(path):
        ordered = sorted(record.candidates, key=lambda c: c.scores[signal])
        worst, best = ordered[0], ordered[-1]
        if best.scores[signal] <= worst.scores[signal] or max(len(best.text), len(worst.text)) > max_chars:
            continue
        rows.append(
            {
                "id": record.id,
                "prompt": record.source,
                "chosen": best.text,
                "rejected": worst.text,
                "chosen_model": best.model,
                "rejected_model": worst.model,
                f"chosen_{signal}": best.scores[signal],
                f"rejected_{signal}": worst.scores[signal],
            }
        )
        if len(rows) == limit:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpaca_blend"))
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/preference"))
    parser.add_argument("--signal", default="gpt4_pref")
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--val", type=int, default=16)
    parser.add_argument("--max-chars", type=int, default=1200)
    args = parser.parse_args()
    for split, limit in (("train", args.train), ("val", args.val)):
        rows = pairs(args.data / f"{split}.jsonl", args.signal, args.max_chars, limit)
        write_jsonl_atomic(args.out / f"{split}.jsonl", rows)
        print(f"{args.out / f'{split}.jsonl'}: {len(rows)} pairs")


if __name__ == "__main__":
    main()
