"""What the multi-process tests launch: `accelerate launch --config_file conf/accelerate/<x>.yaml -m
tests.training.multiprocess_worker <ddp|zero> <out>`. Each scenario is also a function the tests run in one
plain process, so both sides train exactly the same way.

ddp: even (final weights), odd (which pairs each process trained), validate (sharded bubble and full-matrix
validation), resume (a run stopped mid-epoch and resumed, beside one run straight through).
zero: a few steps under DeepSpeed with validation, the best checkpoint saved, logits of a fixed batch; then a
run stopped and resumed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from blender.distributed import is_main_process, join_launched_run
from blender.rankers import PairRanker, encode_records
from blender.rankers.pairranker import PairBatches, pair_loss
from blender.records import parse_record, sample_pairs, signal_matrix
from blender.training.loop import TrainSettings, fit
from blender.training.rankers import validate_ranker
from tests.conftest import make_raw_record, make_tiny_encoder, make_tiny_tokenizer


class Stop(Exception):
    """Raised in a loss call, as a kill would stop the run there."""


def tiny_ranker(seed: int = 0) -> PairRanker:
    tokenizer = make_tiny_tokenizer()
    return PairRanker(
        make_tiny_encoder(len(tokenizer), seed=seed),
        tokenizer,
        task_names=["gpt4_pref"],
        dropout=0.0,  # no dropout: each process draws its own, and the weights are compared across layouts
        source_max_length=12,
        candidate_max_length=10,
        pooling="marker",
    )


def records(n: int, offset: int = 0):
    return [parse_record(make_raw_record(offset + i), "t") for i in range(n)]


def settings(**overrides) -> TrainSettings:
    base = dict(
        epochs=2,
        batch_size=4,
        lr=1e-3,
        mixed_precision="no",
        save_every_steps=1,
        log_every_steps=1,
        show_progress=False,
        warmup_ratio=0.0,
    )
    return TrainSettings(**{**base, **overrides})


def train(
    output_dir: Path,
    n_records: int,
    pairs_per_example: int = 2,
    stop_at: int | None = None,
    val: int = 0,
    **overrides,
) -> tuple[PairRanker, dict, list]:
    """Train a fresh tiny ranker; returns it, the loop's summary (with "trained_pairs", the (record, first,
    second) of the pairs the loop says this process trained on) and the token rows of every loss call."""
    ranker = tiny_ranker()
    train_records = records(n_records)
    signal = [signal_matrix(r, ["gpt4_pref"]) for r in train_records]
    encoded = encode_records(ranker, train_records)
    calls: list[list[list[int]]] = []
    cache: dict[int, PairBatches] = {}

    def epoch_batches(epoch: int) -> PairBatches:
        if epoch not in cache:
            pairs = sample_pairs(signal, pairs_per_example, np.random.default_rng(epoch))
            cache[epoch] = PairBatches(ranker, encoded, pairs, 4, seed=epoch)
        return cache[epoch]

    def loss_fn(model, batch):
        if stop_at is not None and len(calls) >= stop_at:
            raise Stop
        calls.append(batch_rows(batch))
        return pair_loss(model, batch)

    val_records = records(val, 100)

    def evaluate(model):
        return validate_ranker(model, val_records, "gpt4_pref", "m3", quiet_inference(), "full")

    summary = fit(
        ranker,
        loss_fn,
        epoch_batches,
        settings(**overrides),
        output_dir,
        evaluate=evaluate if val else None,
        save_model=lambda model, directory: model.save(directory),
    )
    summary["trained_pairs"] = [
        pair_key(epoch_batches(epoch).pairs[k])
        for epoch, index in summary["trained_batches"]
        for k in epoch_batches(epoch).batches[index]
    ]
    return ranker, summary, calls


def pair_key(pair) -> tuple[int, int, int]:
    return (int(pair.record_index), int(pair.first), int(pair.second))


def batch_rows(batch) -> list[list[int]]:
    """The token ids of a collated batch's rows, padding dropped: which pairs a loss call saw."""
    return [r[m.bool()].tolist() for r, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)]


def quiet_inference():
    from blender.rankers.predict import InferenceSettings

    return InferenceSettings(precision="fp32", show_progress=False, max_batch_size=3)


def validation(seed: int = 0) -> dict:
    """Bubble and full-matrix validation of a fresh tiny ranker on 5 records (shards of 3 and 2)."""
    ranker, val_records = tiny_ranker(seed), records(5, 200)
    out = {}
    for mode in ("bubble", "full"):
        metrics = validate_ranker(ranker, val_records, "gpt4_pref", "m3", quiet_inference(), mode, seed=3)
        out[mode] = {k: v for k, v in metrics.items() if k != "val/seconds"}
    return out


def fixed_logits(ranker: PairRanker) -> list[float]:
    """Pair logits of a fixed batch (every process runs it: under ZeRO-3 a forward is a collective)."""
    encoded = encode_records(ranker, records(3, 300))
    inputs = ranker.encoder.pad([ranker.encoder.pair_ids(encoded[e], 0, 1 + e) for e in range(3)])
    ranker.eval()
    with torch.no_grad():
        return ranker.pair_logits(inputs["input_ids"], inputs["attention_mask"]).float().tolist()


def train_tiny_fuser(output_dir: Path):
    """A tiny T5 fuser trained for one epoch on 8 examples (2 batches of 4), validated on 3 by its loss."""
    from blender.fuser.training import train_fuser
    from tests.fuser.test_model import examples, tiny_fuser

    fuser = tiny_fuser("seq2seq")
    summary = train_fuser(
        fuser,
        examples(),
        examples()[:3],
        settings(epochs=1, best_metric="val/loss", best_mode="min"),
        output_dir,
    )
    return fuser, summary


def fixed_fuser_loss(fuser) -> float:
    """The loss of a fixed batch (every process runs it, as `fixed_logits`)."""
    from blender.fuser.training import encode_examples, fuser_loss
    from tests.fuser.test_model import examples

    batch = fuser.collate(encode_examples(fuser, examples()[4:]))
    fuser.model.eval()
    with torch.no_grad():
        return float(fuser_loss(fuser.model, batch)[0])


def state(ranker: PairRanker) -> dict:
    return {k: v.detach().float().clone() for k, v in ranker.state_dict().items()}


def write(out: Path, name: str, value) -> None:
    if is_main_process():
        (out / name).write_text(json.dumps(value))


def main(scenario: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    if scenario == "ddp":
        ranker, _, _ = train(out / "even", 8)
        if is_main_process():
            torch.save(state(ranker), out / "even.pt")
        _, summary, calls = train(out / "odd", 5, epochs=1)
        (out / f"odd_rank{rank}.json").write_text(
            json.dumps({"trained": summary["trained_pairs"], "calls": calls, "steps": summary["global_step"]})
        )
        join_launched_run()
        write(out, "validate.json", validation())
        straight, _, _ = train(out / "straight", 8, pairs_per_example=3)
        try:
            train(out / "killed", 8, pairs_per_example=3, stop_at=3)
        except Stop:
            pass
        resumed, summary, calls = train(out / "killed", 8, pairs_per_example=3)
        if is_main_process():
            torch.save({"straight": state(straight), "resumed": state(resumed)}, out / "resume.pt")
        write(out, f"resume_rank{rank}.json", {"steps": summary["global_step"], "calls": len(calls)})
    elif scenario == "zero":
        ranker, summary, _ = train(out / "run", 6, epochs=1, val=3)
        logits = fixed_logits(ranker)
        write(
            out,
            "zero.json",
            {"logits": logits, "steps": summary["global_step"], "best": summary["best_value"]},
        )
        try:
            train(out / "killed", 6, epochs=2, stop_at=2)
        except Stop:
            pass
        _, summary, calls = train(out / "killed", 6, epochs=2)
        write(out, "zero_resume.json", {"steps": summary["global_step"], "calls": len(calls)})
        fuser, summary = train_tiny_fuser(out / "fuser")
        write(out, "zero_fuser.json", {"loss": fixed_fuser_loss(fuser), "steps": summary["global_step"]})
    else:
        raise SystemExit(f"unknown scenario {scenario!r}; choose ddp or zero")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
