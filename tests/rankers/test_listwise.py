"""The listwise ranker: [source; candidate] once per candidate, trained on all pairs of an instruction."""

import numpy as np
import pytest
import torch

from blender.evaluation.methods import pointwise_method
from blender.rankers import InferenceSettings, ListwiseRanker, ListwiseSampling, PointwiseRanker, load_ranker
from blender.rankers.listwise import listwise_loss, prepare_listwise_training
from blender.rankers.registry import get_kind, kind_of
from blender.records import parse_record
from blender.training.rankers import train_ranker as fit_ranker
from tests.conftest import make_raw_record, make_tiny_encoder, make_tiny_tokenizer
from tests.training.test_loop import settings

QUIET = InferenceSettings(precision="fp32", show_progress=False)


def listwise(tasks=("gpt4_pref",), pooling="mean", seed=0) -> ListwiseRanker:
    tokenizer = make_tiny_tokenizer()
    return ListwiseRanker(
        make_tiny_encoder(len(tokenizer), seed=seed),
        tokenizer,
        task_names=list(tasks),
        dropout=0.0,
        source_max_length=12,
        candidate_max_length=10,
        pooling=pooling,
    ).eval()


def records(n: int = 3, n_candidates: int = 4, offset: int = 0):
    return [parse_record(make_raw_record(offset + i, n_candidates), "t") for i in range(n)]


def test_it_is_a_registered_pointwise_kind_with_n_passes_per_instruction():
    ranker = listwise()
    assert isinstance(ranker, PointwiseRanker) and kind_of(ranker) is get_kind("listwise")
    assert not get_kind("listwise").pairwise and get_kind("listwise").trainable
    data = records(3, n_candidates=5)
    assert [ranker.forward_passes(r) for r in data] == [5, 5, 5]
    method = pointwise_method(ranker, data, QUIET)
    assert method.forward_passes == 5 and [len(s) for s in method.scores] == [5, 5, 5]


@pytest.mark.parametrize("pooling", ["mean", "marker"])
def test_the_head_reads_source_and_candidate_pooled_apart(pooling):
    ranker = listwise(("a", "b"), pooling=pooling)
    e = ranker.encoder
    encoded = e.encode_record_texts("the answer", ["good", "bad a b"])
    ids = ranker.candidate_ids(encoded, 1)
    assert ids.count(e.source_id) == 1 and ids.count(e.candidate1_id) == 1 and e.candidate2_id not in ids
    batch = e.pad([ids])
    hidden = ranker.backbone(**batch).last_hidden_state[0]
    # Each part runs from its marker to the next (the wrapping tokens between count with the part before).
    start, split = ids.index(e.source_id), ids.index(e.candidate1_id)
    if pooling == "mean":
        source, candidate = hidden[start:split].mean(0), hidden[split:].mean(0)
    else:
        source, candidate = hidden[start], hidden[split]
    expected = ranker.head(torch.cat([source, candidate]))
    torch.testing.assert_close(ranker(batch["input_ids"], batch["attention_mask"])[0], expected)


def test_scores_do_not_depend_on_batching_or_padding():
    ranker, data = listwise(), records(3)
    one_by_one = InferenceSettings(precision="fp32", show_progress=False, max_batch_size=1)
    for a, b in zip(ranker.score_records(data, QUIET), ranker.score_records(data, one_by_one), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_save_and_load_give_the_same_scores(tmp_path):
    ranker, data = listwise(("a", "b"), pooling="marker"), records(2)
    ranker.save(tmp_path / "ckpt")
    again = load_ranker(tmp_path / "ckpt")
    assert type(again) is ListwiseRanker and again.settings() == ranker.settings()
    for a, b in zip(ranker.score_records(data, QUIET), again.score_records(data, QUIET), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_batch_holds_whole_instructions_and_the_loss_sees_all_their_pairs():
    ranker, data = listwise(), records(5)
    plan = prepare_listwise_training(ranker, data, ["gpt4_pref"], ListwiseSampling(), batch_size=8, seed=0)
    batches = plan.epoch_batches(0)
    assert len(batches) == 3  # 8 sequences // 4 candidates = 2 instructions a batch: 2 + 2 + 1
    batch = batches[0]
    assert batch["input_ids"].shape[0] == 8 and batch["signal"].shape == (2, 4, 1)
    # gpt4_pref (k+1)/5: every gap is 0.2 or more, above min_delta 0.1, so all 6 pairs of each instruction count.
    loss, logs = listwise_loss(ranker, batch, ListwiseSampling(), [0.1])
    scores = ranker(batch["input_ids"], batch["attention_mask"]).view(2, 4)
    pairs = [(i, j) for i in range(4) for j in range(i)]  # j < i: candidate i is the better one
    expected = torch.stack(
        [torch.nn.functional.softplus(scores[:, j] - scores[:, i]) for i, j in pairs]
    ).mean()
    torch.testing.assert_close(loss, expected)
    assert set(logs) == {"pick_is_best"}


def overfit(ranker, tmp_path, sampling=None, batch_size=4):
    """Train on four instructions, validated on the same four: (summary, data, the best checkpoint reloaded)."""
    data = records(4)
    summary = fit_ranker(
        ranker,
        data,
        data,
        ["gpt4_pref"],
        "gpt4_pref",
        "m3",
        sampling or ListwiseSampling(),
        settings(epochs=15, batch_size=batch_size, lr=3e-3, save_every_steps=1000),
        tmp_path,
    )
    return summary, data, load_ranker(tmp_path / "best")


def test_a_tiny_listwise_ranker_overfits_a_few_instructions(tmp_path, one_thread):
    # The best candidate (0.8) is picked in each of the four instructions.
    summary, data, trained = overfit(listwise(seed=1), tmp_path)
    assert summary["best_value"] == pytest.approx(0.8)
    picks = [int(np.argmax(s)) for s in trained.score_records(data, QUIET)]
    assert picks == [3, 3, 3, 3]


def tiny_decoder(vocab_size: int, seed: int = 0):
    """A two-layer Gemma 3 (a causal decoder, as the packaged gemma3-270m), one layer of it sliding-window."""
    from transformers import Gemma3TextConfig, Gemma3TextModel

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=64, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    return Gemma3TextModel(config)


def test_a_decoder_backbone_trains_saves_and_loads(tmp_path, one_thread):
    # Causal attention: a candidate's states see the source but not the padding after them, so the pooled
    # scores must not depend on batching; then the same overfitting check as the encoder's.
    tokenizer = make_tiny_tokenizer()
    ranker = ListwiseRanker(
        tiny_decoder(len(tokenizer), seed=1), tokenizer, ["gpt4_pref"], dropout=0.0,
        source_max_length=12, candidate_max_length=10,
    )  # fmt: skip
    one_by_one = InferenceSettings(precision="fp32", show_progress=False, max_batch_size=1)
    for a, b in zip(
        ranker.eval().score_records(records(4), QUIET),
        ranker.score_records(records(4), one_by_one),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)
    summary, data, trained = overfit(ranker, tmp_path)
    assert summary["best_value"] == pytest.approx(0.8)
    assert type(trained.backbone).__name__ == "Gemma3TextModel"
    assert [int(np.argmax(s)) for s in trained.score_records(data, QUIET)] == [3, 3, 3, 3]


@pytest.mark.parametrize(
    "sampling, batch_size",
    [
        (ListwiseSampling(loss="listnet", temperature=0.1), 4),
        (ListwiseSampling(loss="bradley_terry", temperature=0.1, reference_signal=0.5), 5),
    ],
    ids=["listnet", "bradley_terry_with_reference"],
)
def test_the_other_losses_train_too(tmp_path, one_thread, sampling, batch_size):
    summary, _, _ = overfit(listwise(seed=1), tmp_path, sampling, batch_size)
    assert np.isfinite(summary["train/loss"]) and summary["best_value"] == pytest.approx(0.8)


def test_sampling_names_the_bad_key():
    with pytest.raises(ValueError, match="ranker.sampling.loss='softmax'"):
        ListwiseSampling(loss="softmax")
    with pytest.raises(ValueError, match="ranker.sampling.weighting='top'"):
        ListwiseSampling(weighting="top")


def test_candidates_per_instruction_draws_that_many_each_epoch():
    ranker, data = listwise(), records(4, n_candidates=5)
    sampling = ListwiseSampling(candidates_per_instruction=3)
    plan = prepare_listwise_training(ranker, data, ["gpt4_pref"], sampling, batch_size=6, seed=0)
    first, second = plan.epoch_batches(0), plan.epoch_batches(1)
    assert all(len(c) == 3 and len(set(c)) == 3 for c in first.chosen)
    assert first.chosen != second.chosen  # drawn anew each epoch
    batch = first[0]
    assert batch["input_ids"].shape[0] == 6 and batch["signal"].shape == (2, 3, 1)  # 6 // 3 = 2 instructions
    e = first.batches[0][0]
    expected = [(k + 1) / 6 for k in first.chosen[e]]  # make_raw_record: candidate k scores (k+1)/(n+1)
    np.testing.assert_allclose(batch["signal"][0, :, 0].numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="candidates_per_instruction=1"):
        ListwiseSampling(candidates_per_instruction=1)


def test_decisive_pairs_leave_out_ties_per_task():
    from blender.rankers.listwise import decisive_pairs

    one_task = np.array([[0.9], [0.5], [0.45]])
    assert decisive_pairs(one_task, [0.1]) == 2  # (0, 1) and (0, 2); (1, 2) is a tie
    two_tasks = np.array([[0.9, 0.0], [0.5, 0.0], [0.45, 1.0]])
    assert decisive_pairs(two_tasks, [0.1, 0.5]) == 3  # (1, 2) is decisive on the second task
    assert decisive_pairs(one_task, [1.0]) == 0


def test_the_reference_answer_trains_as_one_more_candidate_with_its_signal():
    ranker, data = listwise(), records(3)
    sampling = ListwiseSampling(reference_signal=0.5)
    plan = prepare_listwise_training(ranker, data, ["gpt4_pref"], sampling, batch_size=10, seed=0)
    batches = plan.epoch_batches(0)
    batch = batches[0]
    # 10 sequences // 5 candidates (4 answers and the reference) = 2 instructions a batch.
    assert batch["input_ids"].shape[0] == 10 and batch["signal"].shape == (2, 5, 1)
    # make_raw_record: candidate k scores (k+1)/5; the reference comes last at 0.5.
    np.testing.assert_allclose(batch["signal"][0, :, 0].numpy(), [0.2, 0.4, 0.6, 0.8, 0.5], rtol=1e-6)
    assert batch["is_reference"].tolist() == [[False] * 4 + [True]] * 2
    e = ranker.encoder
    reference_ids = e.encode_record_texts(data[0].source, [data[0].output]).candidates[0]
    assert batches.encoded[batches.batches[0][0]].candidates[-1] == reference_ids
    assert "reference answer" in plan.description
    # The reference is trained on but never the pick: a reference scored highest leaves the pick to the answers.
    scores = torch.tensor([[0.0, 0.0, 0.0, 1.0, 9.0]] * 2)

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return scores.reshape(-1, 1)

    _, logs = listwise_loss(Fixed(), batch, sampling, [0.1])
    assert logs["pick_is_best"] == 1.0
    # The signal transform applies to the reference's score as to the answers'.
    logit = ListwiseSampling(reference_signal={"gpt4_pref": 0.5}, signal_transform="logit")
    plan = prepare_listwise_training(ranker, data, ["gpt4_pref"], logit, batch_size=10, seed=0)
    assert plan.epoch_batches(0)[0]["signal"][0, -1, 0].item() == 0.0


def test_a_reference_signal_needs_a_number_and_a_reference():
    with pytest.raises(ValueError, match="reference_signal='half'"):
        ListwiseSampling(reference_signal="half")
    raw = make_raw_record(0)
    raw["output"] = "  "
    ranker = listwise()
    with pytest.raises(ValueError, match="record 'test/0' has an empty reference"):
        prepare_listwise_training(
            ranker, [parse_record(raw, "t")], ["gpt4_pref"], ListwiseSampling(reference_signal=0.5), 8, 0
        )
