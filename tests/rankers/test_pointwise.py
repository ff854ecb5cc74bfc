import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blender.rankers import InferenceSettings, PointwiseRanker, SimCLS, SummaReranker, load_ranker
from blender.records import parse_record
from tests.conftest import make_raw_record, make_tiny_encoder, make_tiny_tokenizer

QUIET = InferenceSettings(precision="fp32", show_progress=False)


def summareranker(tasks=("q",)) -> SummaReranker:
    tokenizer = make_tiny_tokenizer()
    return SummaReranker(
        make_tiny_encoder(len(tokenizer)),
        tokenizer,
        task_names=list(tasks),
        dropout=0.0,
        source_max_length=12,
        candidate_max_length=10,
    ).eval()


def simcls(pooling="mean") -> SimCLS:
    tokenizer = make_tiny_tokenizer()
    return SimCLS(
        make_tiny_encoder(len(tokenizer)),
        tokenizer,
        pooling=pooling,
        source_max_length=12,
        candidate_max_length=10,
    ).eval()


def records(n: int = 3, n_candidates: int = 4):
    return [parse_record(make_raw_record(i, n_candidates), "t") for i in range(n)]


def test_both_follow_the_pointwise_protocol():
    assert isinstance(summareranker(), PointwiseRanker) and isinstance(simcls(), PointwiseRanker)


def test_summareranker_reads_source_and_one_candidate_at_the_first_token():
    ranker = summareranker(("a", "b"))
    encoded = ranker.encoder.encode_record_texts("the answer", ["good", "bad a"])
    ids = ranker.candidate_ids(encoded, 1)
    e = ranker.encoder
    assert ids.count(e.source_id) == 1 and ids.count(e.candidate1_id) == 1 and e.candidate2_id not in ids
    assert ids[-len(encoded.candidates[1]) - 1 : -1] == encoded.candidates[1]  # the candidate, then [SEP]
    batch = e.pad([ids])
    logits = ranker(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (1, 2)
    hidden = ranker.backbone(**batch).last_hidden_state[0, 0]
    torch.testing.assert_close(logits[0], ranker.head(hidden))
    # The ranking score is the mean over tasks.
    (scores,) = ranker.score_records([parse_record(make_raw_record(0, 2), "t")], QUIET)
    record = parse_record(make_raw_record(0, 2), "t")
    encoded = e.encode_record_texts(record.source, [c.text for c in record.candidates])
    manual = [ranker(**e.pad([ranker.candidate_ids(encoded, k)])).mean().item() for k in range(2)]
    np.testing.assert_allclose(scores, manual, atol=1e-5)


def test_summareranker_scores_do_not_depend_on_batching():
    ranker, data = summareranker(), records(4, 5)
    one = ranker.score_records(
        data, InferenceSettings(precision="fp32", max_batch_size=1, show_progress=False)
    )
    many = ranker.score_records(
        data, InferenceSettings(precision="fp32", max_batch_size=64, show_progress=False)
    )
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert ranker.forward_passes(data[0]) == 5


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_simcls_score_is_the_cosine_of_separate_embeddings(pooling):
    ranker = simcls(pooling)
    record = parse_record(make_raw_record(0, 3), "t")
    (scores,) = ranker.score_records([record], QUIET)

    def embed(text: str, n: int) -> torch.Tensor:
        ids = torch.tensor([ranker.tokenize([text], n)[0]])
        hidden = ranker.backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        return hidden[0] if pooling == "cls" else hidden.mean(0)

    source = embed(record.source, 12)
    manual = [F.cosine_similarity(embed(c.text, 10), source, dim=0).item() for c in record.candidates]
    np.testing.assert_allclose(scores, manual, atol=1e-5)
    assert ranker.forward_passes(record) == 4  # 3 candidates + the source once


def test_simcls_forward_matches_score_records():
    ranker, record = simcls(), parse_record(make_raw_record(0, 3), "t")
    source = ranker.pad(ranker.tokenize([record.source], 12))
    candidates = ranker.pad(ranker.tokenize([c.text for c in record.candidates], 10))
    cosines = ranker(
        source["input_ids"],
        source["attention_mask"],
        candidates["input_ids"].unsqueeze(0),
        candidates["attention_mask"].unsqueeze(0),
    )
    np.testing.assert_allclose(
        cosines[0].detach().numpy(), ranker.score_records([record], QUIET)[0], atol=1e-5
    )


@pytest.mark.parametrize("build", [summareranker, simcls])
def test_save_and_load_give_the_same_scores(build, tmp_path):
    ranker, data = build(), records(2)
    ranker.save(tmp_path / "ckpt")
    again = load_ranker(tmp_path / "ckpt")
    assert type(again) is type(ranker)
    for a, b in zip(ranker.score_records(data, QUIET), again.score_records(data, QUIET), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_load_ranker_names_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a ranker checkpoint"):
        load_ranker(tmp_path)
