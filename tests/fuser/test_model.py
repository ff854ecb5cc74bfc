"""Tiny fusers from config overfit 8 examples: seq2seq (T5), bert2bert and decoder-only (GPT-2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from blender.fuser.model import GenerationSettings, GenFuser, build_fuser
from blender.fuser.training import FuserExample, encode_examples, fuser_loss, train_fuser
from blender.training.loop import TrainSettings
from tests.fuser.conftest import ANSWER_WORDS, make_fuser_tokenizer

TINY = {
    "seq2seq": {
        "model_type": "t5",
        "d_model": 32,
        "d_kv": 16,
        "d_ff": 64,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": 2,
        "dropout_rate": 0.0,
        "decoder_start_token_id": 0,
    },
    "bert2bert": {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "causal": {
        "model_type": "gpt2",
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 2,
        "n_positions": 256,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    },
}
STEPS = 200
PACKING = {"candidate_max_length": 4, "max_source_length": 64, "max_target_length": 6}


def tiny_fuser(kind: str, seed: int = 0) -> GenFuser:
    torch.manual_seed(seed)
    tokenizer = make_fuser_tokenizer(wrap=kind == "bert2bert")
    return build_fuser(
        kind,
        config=TINY[kind],
        tokenizer=tokenizer,
        packing={**PACKING, "add_special_tokens": kind == "bert2bert"},
        generation={"num_beams": 1, "max_new_tokens": 8, "show_progress": False},
    )


def examples() -> list[FuserExample]:
    """8 instructions; the target depends on the instruction and the candidates' words."""
    w = ANSWER_WORDS
    return [
        FuserExample(
            f"name {w[k]}", "", [f"{w[k]} {w[k + 1]}", f"{w[k + 2]}", "two three"], f"{w[k + 1]} {w[k]} the"
        )
        for k in range(8)
    ]


@pytest.mark.parametrize("kind", ["seq2seq", "bert2bert", "causal"])
def test_tiny_fuser_overfits_eight_examples(kind, tmp_path):
    fuser = tiny_fuser(kind)
    data = examples()
    batch = fuser.collate(encode_examples(fuser, data))
    optimizer = torch.optim.AdamW(fuser.model.parameters(), lr=5e-3)
    fuser.model.train()
    losses = []
    for _ in range(STEPS):
        loss, _ = fuser_loss(fuser.model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.1 < losses[0]
    answers = fuser.generate(
        [e.instruction for e in data], [e.input for e in data], [e.candidates for e in data]
    )
    assert answers == [e.target for e in data]
    # Saved and loaded, it answers the same.
    fuser.save(tmp_path / "fuser")
    loaded = GenFuser.load(tmp_path / "fuser")
    assert loaded.kind == kind and loaded.packing == fuser.packing
    assert loaded.generate([e.instruction for e in data], [""] * 8, [e.candidates for e in data]) == answers


def test_fit_keeps_the_lowest_val_loss_and_resumes(tmp_path):
    data = examples()
    settings = TrainSettings(
        epochs=2,
        batch_size=4,
        lr=1e-2,
        warmup_ratio=0.0,
        mixed_precision="no",
        best_metric="val/loss",
        best_mode="min",
        save_every_steps=1,
        show_progress=False,
    )
    first = train_fuser(tiny_fuser("bert2bert"), data, data, replace(settings, epochs=1), tmp_path)
    assert first["global_step"] == 2 and (tmp_path / "best" / "fuser_config.json").is_file()
    # A new process (fresh weights) picks up from checkpoints/last, as after a kill, and runs the second epoch.
    second = train_fuser(tiny_fuser("bert2bert", seed=1), data, data, settings, tmp_path)
    assert second["global_step"] == 4
    assert second["best_value"] == pytest.approx(min(h["val/loss"] for h in second["history"]))
    assert [h["epoch"] for h in second["history"]] == [0, 1]


def test_causal_labels_cover_the_answer_only():
    fuser = tiny_fuser("causal")
    example = fuser.encode("name b", "", ["b c"], "c b is")
    n_answer = len(example["labels"]) - example["labels"].count(-100)
    assert n_answer == 4  # "c b is" + eos ([SEP])
    assert example["labels"][-n_answer:] == example["input_ids"][-n_answer:]


def test_training_shuffles_candidates_per_epoch_but_not_at_inference():
    fuser = tiny_fuser("seq2seq")
    data = [FuserExample("name", "", ["b", "c", "d"], "b")] * 4
    shuffled = encode_examples(fuser, data, np.random.default_rng(0))
    assert len({tuple(e["input_ids"]) for e in shuffled}) > 1
    ordered = encode_examples(fuser, data)
    assert ordered[0]["input_ids"] == fuser.encode("name", "", ["b", "c", "d"], "b")["input_ids"]


def test_beam_search_batches_sorted_by_length_come_back_in_order():
    fuser = tiny_fuser("bert2bert")
    data = examples()
    settings = GenerationSettings(num_beams=2, max_new_tokens=4, batch_size=3, show_progress=False)
    together = fuser.generate(
        [e.instruction for e in data],
        [""] * 8,
        [e.candidates[: 1 + k % 3] for k, e in enumerate(data)],
        settings,
    )
    alone = [
        fuser.generate([e.instruction], [""], [e.candidates[: 1 + k % 3]], settings)[0]
        for k, e in enumerate(data)
    ]
    assert together == alone
