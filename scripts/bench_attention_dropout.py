"""What attention dropout costs a training step (`python scripts/bench_attention_dropout.py`).

One forward and backward pass of the packaged all-MiniLM-L6-v2 in training mode, as the listwise ranker takes
them (6 sequences a step, bf16 autocast where the CPU computes it natively), at the default window (64 + 224
= 288 tokens) and MiniLM's whole 512, with the attention probabilities' dropout at 0.1 (the checkpoint's) and 0
(`ranker.attention_dropout=0`), under PyTorch's fused attention (sdpa, transformers' default) and the unfused
one (eager). All cells in one process, rounds interleaved, each cell's median taken: compare them as ratios.

Results go to bench/attention_dropout.{json,md}, written atomically, with the machine and versions.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers

from blender.devices import native_bf16
from blender.files import write_json_atomic, write_text_atomic
from blender.rankers import build_backbone

LENGTHS = (288, 512)
DROPOUTS = (0.1, 0.0)
ATTENTION = ("sdpa", "eager")


def step_seconds(model: torch.nn.Module, input_ids: torch.Tensor, bf16: bool) -> float:
    mask = torch.ones_like(input_ids)
    mask[:, -16:] = 0  # some padding, as a batch of answers of different lengths has
    start = time.perf_counter()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    hidden.float().mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per cell (after one warm-up)")
    parser.add_argument("--batch", type=int, default=6, help="sequences a step")
    parser.add_argument("--out", type=Path, default=Path("bench/attention_dropout"))
    args = parser.parse_args()
    if args.rounds < 1 or args.batch < 1:
        parser.error("--rounds and --batch must be at least 1")

    torch.manual_seed(0)
    bf16 = native_bf16(torch.device("cpu"))
    models = {}
    for attention in ATTENTION:
        for dropout in DROPOUTS:
            model, _ = build_backbone("minilm", attention_dropout=dropout)
            model.set_attn_implementation(attention)
            models[attention, dropout] = model.train()
    inputs = {n: torch.randint(1000, 20000, (args.batch, n)) for n in LENGTHS}
    cells = [(a, d, n) for a in ATTENTION for d in DROPOUTS for n in LENGTHS]
    times: dict[tuple, list[float]] = {cell: [] for cell in cells}
    for round_index in range(args.rounds + 1):
        for attention, dropout, n in cells if round_index % 2 else reversed(cells):
            seconds = step_seconds(models[attention, dropout], inputs[n], bf16)
            if round_index:  # the first round warms up
                times[attention, dropout, n].append(seconds)

    rows = [
        {"attention": a, "attention_dropout": d, "tokens": n, "median_s": statistics.median(times[a, d, n])}
        for a, d, n in cells
    ]
    result = {
        "what": f"MiniLM forward+backward, training mode, batch {args.batch}, {'bf16' if bf16 else 'fp32'}",
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "rounds": args.rounds,
        "rows": rows,
    }
    base = {(r["attention"], r["tokens"]): r["median_s"] for r in rows if r["attention_dropout"] == 0.1}
    lines = [
        f"# Attention dropout and a training step ({result['what']})",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, {result['threads']} threads, "
        f"median of {args.rounds} interleaved rounds, one process.",
        "",
        "| attention | dropout | tokens | s a step | speed-up over dropout 0.1 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = base[r["attention"], r["tokens"]] / r["median_s"]
        lines.append(
            f"| {r['attention']} | {r['attention_dropout']} | {r['tokens']} | {r['median_s']:.3f} | {speedup:.2f}× |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out.with_suffix(".json"), result)
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
