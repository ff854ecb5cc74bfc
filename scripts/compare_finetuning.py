"""Val loss per minute of training for the fuser's fine-tuning modes: full, frozen embeddings, LoRA (peft).

    nice -n 10 .venv/bin/python scripts/compare_finetuning.py --out outputs/finetuning_modes

Each mode trains a fresh copy of the fuser (default: conf/fuser/gemma3_270m.yaml's packing) on the same
examples, in the same order, with the real training loss (`blender.fuser.training.loss_for`), AdamW, a
constant rate after a short warm-up; val loss (answer tokens only) is measured on the same val examples
before training and every `--eval-every` steps. Val loss after a given number of steps does not depend on
how busy the machine is; seconds per step does, so they are timed in a separate phase that alternates one
step of each mode for `--timing-rounds` rounds (every mode sees the same load) and reported as ratios too;
that phase holds every mode's model and optimizer at once (~10 GB for the three), so it is off by default
(`--timing-rounds 0`: each mode's own steps are timed, and the machine's load is logged beside them).
Val loss per minute = val loss reached at step s, against s × (seconds per step) / 60.

The K candidates are drawn at random per instruction (`topk.selection=random`'s rule), so the measurement
needs no trained ranker; what it compares is how fast each mode learns the fusion task, not the ranker.
Writes <out>/finetuning_modes.json and .md.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from blender.fuser.model import build_fuser
from blender.fuser.topk import random_rankings
from blender.fuser.training import FuserBatches, encode_examples, fuser_examples, loss_for, validation_loss
from blender.records import load_candidates
from blender.training.loop import TrainSettings, build_optimizer

log = logging.getLogger("compare_finetuning")
REPO = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 2


def build(fuser_config: dict, mode: str, seed: int):
    torch.manual_seed(seed)
    return build_fuser(
        fuser_config["kind"],
        name_or_path=fuser_config["name_or_path"],
        packing=fuser_config["packing"],
        generation=fuser_config["generation"],
        finetuning={**fuser_config.get("finetuning", {}), "mode": mode},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fuser", default=str(REPO / "conf/fuser/gemma3_270m.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/alpaca_blend_modern"))
    parser.add_argument("--modes", nargs="+", default=["full", "frozen_embeddings", "lora"])
    parser.add_argument("--lr", nargs="+", type=float, default=[5e-5, 5e-5, 5e-4], help="one per mode")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--n-val", type=int, default=16)
    parser.add_argument("--timing-rounds", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/finetuning_modes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if len(args.lr) != len(args.modes):
        parser.error("give one --lr per mode")
    torch.set_num_threads(args.threads)
    fuser_config = yaml.safe_load(Path(args.fuser).read_text())
    train, val = load_candidates(args.data, splits=("train", "val"))
    train = train[: args.steps * args.batch_size]
    val = val[: args.n_val]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"settings": vars(args), "modes": {}}

    def batches_for(fuser) -> FuserBatches:
        examples = fuser_examples(fuser, train, random_rankings(train, args.seed), args.k)
        return FuserBatches(fuser, encode_examples(fuser, examples), args.batch_size, seed=args.seed)

    fusers = {}
    for mode, lr in zip(args.modes, args.lr, strict=True):
        fuser = build(fuser_config, mode, args.seed)
        val_encoded = encode_examples(
            fuser, fuser_examples(fuser, val, random_rankings(val, args.seed), args.k)
        )
        batches = batches_for(fuser)
        settings = TrainSettings(lr=lr, weight_decay=0.0)
        optimizer = build_optimizer(fuser.model, settings)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP_STEPS))
        loss_fn = loss_for(fuser)
        trainable = sum(p.numel() for p in fuser.model.parameters() if p.requires_grad)
        curve = [{"step": 0, "val_loss": validation_loss(fuser, fuser.model, val_encoded, args.batch_size)}]
        log.info(
            "%s: %.1fM trainable, val loss %.4f before training", mode, trainable / 1e6, curve[0]["val_loss"]
        )
        step_seconds = []
        fuser.model.train()
        for step in range(1, args.steps + 1):
            batch = batches[(step - 1) % len(batches)]
            began = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = loss_fn(fuser.model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(fuser.model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            step_seconds.append(time.perf_counter() - began)
            if step % args.eval_every == 0 or step == args.steps:
                curve.append(
                    {
                        "step": step,
                        "train_loss": loss.item(),
                        "val_loss": validation_loss(fuser, fuser.model, val_encoded, args.batch_size),
                    }
                )
                log.info(
                    "%s step %d: val loss %.4f (%.1f s/step, load %.1f)",
                    mode,
                    step,
                    curve[-1]["val_loss"],
                    step_seconds[-1],
                    os.getloadavg()[0],
                )
        results["modes"][mode] = {
            "lr": lr,
            "trainable_parameters": trainable,
            "curve": curve,
            "train_seconds_per_step_sequential": step_seconds,
        }
        fusers[mode] = (fuser, optimizer, loss_fn, batches)
        (out / "finetuning_modes.json").write_text(json.dumps(results, indent=2))
        if args.timing_rounds == 0:
            del fusers[mode], fuser, optimizer, scheduler, batches  # one model in memory at a time
            gc.collect()

    # Timing: one step of each mode in turn, so load changes hit every mode alike.
    timings: dict[str, list[float]] = {mode: [] for mode in fusers}
    loads = []
    for round_ in range(args.timing_rounds):
        for mode, (fuser, optimizer, loss_fn, batches) in fusers.items():
            batch = batches[round_ % len(batches)]
            began = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = loss_fn(fuser.model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            timings[mode].append(time.perf_counter() - began)
        loads.append(os.getloadavg()[0])
    results["timing"] = {
        "rounds": args.timing_rounds,
        "load_avg_1min": loads,
        "seconds_per_step": {m: statistics.median(t) for m, t in timings.items() if t},
        "all": timings,
    }
    reference = results["timing"]["seconds_per_step"].get("full")
    lines = [
        "| mode | trainable | lr | val loss (step 0 → last) | s/step (alternating) | ratio to full | "
        "val loss drop per minute |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, entry in results["modes"].items():
        curve = entry["curve"]
        seconds = results["timing"]["seconds_per_step"].get(mode) or statistics.median(
            entry["train_seconds_per_step_sequential"]
        )
        minutes = curve[-1]["step"] * seconds / 60
        drop = (curve[0]["val_loss"] - curve[-1]["val_loss"]) / minutes
        entry.update(seconds_per_step=seconds, val_loss_drop_per_minute=drop)
        ratio = f"{seconds / reference:.2f}" if reference else "–"
        lines.append(
            f"| {mode} | {entry['trainable_parameters'] / 1e6:.1f}M | {entry['lr']:g} | "
            f"{curve[0]['val_loss']:.3f} → {curve[-1]['val_loss']:.3f} | {seconds:.1f} | {ratio} | "
            f"{drop:.3f} |"
        )
    lines += [
        "",
        "Val loss by step: "
        + "; ".join(
            f"{m}: " + ", ".join(f"{c['step']}: {c['val_loss']:.3f}" for c in e["curve"])
            for m, e in results["modes"].items()
        ),
    ]
    (out / "finetuning_modes.json").write_text(json.dumps(results, indent=2))
    (out / "finetuning_modes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    np.set_printoptions(precision=3)


if __name__ == "__main__":
    main()
