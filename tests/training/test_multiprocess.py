"""Two CPU processes through `accelerate launch` (DDP over gloo; DeepSpeed ZeRO-2 / ZeRO-3 on DeepSpeed's CPU
accelerator) against one plain process doing the same work: same weights, every pair once, the same
validation and evaluation report, an exact resume, and ZeRO checkpoints that one plain process loads.

Each launch runs several scenarios of `tests.training.multiprocess_worker` at once (a launch costs most of
the time here: two interpreters importing torch); the tests read what it wrote."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blender.cli import evaluate
from blender.fuser.model import GenFuser
from blender.rankers import PairRanker
from blender.training.checkpoints import RunFolderError
from tests.conftest import CONF, REPO, compose_config, make_raw_record, write_jsonl
from tests.fuser.test_model import tiny_fuser
from tests.training import multiprocess_worker as worker

pytestmark = pytest.mark.slow

ACCELERATE = Path(sys.executable).parent / "accelerate"


def free_port() -> int:
    # Another launch on this machine (the lead's, a second test run) may hold accelerate's default 29500.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config: str, args: list[str], env: dict[str, str] | None = None) -> None:
    command = [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(CONF / "accelerate" / f"{config}.yaml"),
        "--main_process_port",
        str(free_port()),
        "-m",
        *args,
    ]
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    launch("multi_cpu", ["tests.training.multiprocess_worker", "ddp", str(out)])
    return out


def test_ddp_on_two_processes_ends_with_the_weights_of_one_process_with_the_same_global_batch(ddp, tmp_path):
    # 16 pairs in 4 batches of 4, 2 epochs: two processes take one batch each per step; one process accumulates
    # two batches per step, the same two, in the same order.
    single, summary, _ = worker.train(tmp_path, 8, grad_accum=2)
    assert summary["global_step"] == 4
    two = torch.load(ddp / "even.pt")
    start = worker.state(worker.tiny_ranker())
    moved = [k for k in start if not torch.equal(start[k], two[k])]
    assert len(moved) > len(start) // 2  # it trained: the comparison below is not of untouched weights
    for name, value in worker.state(single).items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=0, msg=name)


def test_over_one_epoch_the_two_processes_train_every_pair_of_one_process_once(ddp, tmp_path):
    # 10 pairs in 3 batches: process 0 trains batches 0 and 2, process 1 batch 1 and then a zero-weight filler.
    _, summary, calls = worker.train(tmp_path, 5, epochs=1)
    single = [tuple(p) for p in summary["trained_pairs"]]
    assert len(single) == len(set(single)) == 10 and len(calls) == 3
    ranks = [json.loads((ddp / f"odd_rank{r}.json").read_text()) for r in (0, 1)]
    trained = [tuple(p) for rank in ranks for p in rank["trained"]]
    assert sorted(trained) == sorted(single)  # the union is the one-process set, and no pair twice
    assert [len(rank["trained"]) for rank in ranks] == [8, 2]
    # Both ran two micro-batches (in step, two optimizer steps); process 1's second was a copy of its first.
    assert [len(rank["calls"]) for rank in ranks] == [2, 2] and [rank["steps"] for rank in ranks] == [2, 2]
    assert ranks[1]["calls"][1] == ranks[1]["calls"][0]
    # What the loss saw, fillers left out, is what one process's loss saw: row for row.
    real = [*ranks[0]["calls"], ranks[1]["calls"][0]]
    assert sorted(map(tuple, sum(real, []))) == sorted(map(tuple, sum(calls, [])))


def test_validation_sharded_over_two_processes_equals_one_process(ddp):
    # 5 records in shards of 3 and 2; bubble draws each record's starting order as the whole set would.
    assert json.loads((ddp / "validate.json").read_text()) == worker.validation()


def test_kill_and_resume_under_two_processes_ends_where_a_straight_run_ends(ddp):
    runs = torch.load(ddp / "resume.pt")
    for name, value in runs["straight"].items():
        torch.testing.assert_close(runs["resumed"][name], value, atol=0, rtol=0, msg=name)
    # 24 pairs, 6 batches, 3 steps an epoch on 2 processes: stopped after 3, the resumed run did the other 3.
    assert json.loads((ddp / "resume_rank0.json").read_text()) == {"steps": 6, "calls": 3}


def test_resuming_a_two_process_run_in_one_process_is_refused_naming_both_counts(ddp, tmp_path):
    shutil.copytree(ddp / "straight", tmp_path / "run")
    with pytest.raises(
        RunFolderError, match=r"written by a run of 2 process\(es\), this run has 1.*--num_processes 2"
    ):
        worker.train(tmp_path / "run", 8, pairs_per_example=3)


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    write_jsonl(data / "train.jsonl", [make_raw_record(i) for i in range(6)])
    write_jsonl(data / "val.jsonl", [make_raw_record(100 + i) for i in range(7)])  # shards of 4 and 3
    worker.tiny_ranker(seed=1).save(root / "ckpt")
    return root, data


def eval_config(root: Path, data: Path, out: str) -> list[str]:
    return [
        f"checkpoint={root / 'ckpt'}",
        f"data.path={data}",
        f"output_dir={root / out}",
        "inference.precision=fp32",
        "inference.max_batch_size=5",
        "inference.show_progress=false",
    ]


def test_evaluation_under_two_processes_writes_the_report_of_one_process(eval_inputs):
    root, data = eval_inputs
    evaluate.run(compose_config("eval", eval_config(root, data, "one")))
    launch("multi_cpu", ["blender.cli.evaluate", *eval_config(root, data, "two")])
    one, two = (json.loads(next((root / k).glob("ranking_*.json")).read_text()) for k in ("one", "two"))
    timing = {"seconds_per_instruction"}  # measured, so never equal; every other number is

    def rows(table):
        return [{k: v for k, v in row.items() if k not in timing} for row in table["rows"]]

    assert len(one["rows"]) > 4 and rows(two) == rows(one)
    assert two["differences"] == one["differences"]
    # The same files, written once (Hydra's own folder and log aside: the launched run went through main()).

    def written(folder):
        hydra = {"hydra", ".hydra"}
        return sorted(p.name for p in folder.iterdir() if p.name not in hydra and p.suffix != ".log")

    assert written(root / "two") == written(root / "one")


@pytest.mark.parametrize("config", ["zero2_cpu", "zero3_cpu"])
def test_deepspeed_zero_trains_saves_and_the_checkpoint_scores_alike_in_one_plain_process(config, tmp_path):
    launch(config, ["tests.training.multiprocess_worker", "zero", str(tmp_path)], {"DS_ACCELERATOR": "cpu"})
    result = json.loads((tmp_path / "zero.json").read_text())
    # 12 pairs, 3 batches: 2 rounds (the last padded) per epoch on 2 processes.
    assert result["steps"] == 2 and result["best"] is not None
    loaded = PairRanker.load(tmp_path / "run" / "best")
    torch.testing.assert_close(
        torch.tensor(worker.fixed_logits(loaded)), torch.tensor(result["logits"]), atol=1e-5, rtol=0
    )
    fresh = worker.fixed_logits(worker.tiny_ranker())
    assert max(abs(a - b) for a, b in zip(fresh, result["logits"], strict=True)) > 1e-3  # it trained
    # Stopped after 2 of 4 steps and resumed from the DeepSpeed checkpoint: the other 2 were trained.
    assert json.loads((tmp_path / "zero_resume.json").read_text()) == {"steps": 4, "calls": 2}
    # The fuser too: one epoch of 2 batches is 1 step on 2 processes; its best/ loads in one plain process.
    fused = json.loads((tmp_path / "zero_fuser.json").read_text())
    assert fused["steps"] == 1
    loaded = GenFuser.load(tmp_path / "fuser" / "best")
    assert worker.fixed_fuser_loss(loaded) == pytest.approx(fused["loss"], abs=1e-5)
    assert abs(worker.fixed_fuser_loss(tiny_fuser("seq2seq")) - fused["loss"]) > 1e-4  # it trained
