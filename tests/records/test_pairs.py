import numpy as np
import pytest

from blender.records import Record, RecordError, pair_targets, parse_record, sample_pairs, signal_matrix
from tests.conftest import make_raw_record


def record(n: int = 4) -> Record:
    return parse_record(make_raw_record(0, n), where="test")


def test_signal_matrix_reads_each_task_and_transforms():
    r = record()
    values = signal_matrix(r, ["gpt4_pref", "other"])
    assert values.shape == (4, 2)
    np.testing.assert_allclose(values[:, 0], [0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(values[:, 1], [0, -1, -2, -3])
    logit = signal_matrix(r, ["gpt4_pref"], "logit")[:, 0]
    np.testing.assert_allclose(logit, np.log([0.2 / 0.8, 0.4 / 0.6, 0.6 / 0.4, 0.8 / 0.2]))
    np.testing.assert_allclose(signal_matrix(r, ["other"], "rank")[:, 0], [4, 3, 2, 1])


def test_missing_signal_names_record_candidate_and_choices():
    with pytest.raises(
        RecordError, match=r"record 'test/0', candidate 'm0': no score 'bartscore'.*gpt4_pref"
    ):
        signal_matrix(record(), ["bartscore"])


def test_pair_targets_sign_and_ties():
    signal = np.array([[0.1, 5.0], [0.3, 5.0], [0.35, 1.0]])
    assert pair_targets(signal, 0, 1) == (-1.0, 0.0)
    assert pair_targets(signal, 2, 1) == (1.0, -1.0)
    assert pair_targets(signal, 2, 1, min_delta=0.1) == (0.0, -1.0)


def test_sample_pairs_count_order_and_seed():
    signals = [np.arange(5, dtype=float)[:, None] for _ in range(20)]
    pairs = sample_pairs(signals, 5, np.random.default_rng(0))
    assert len(pairs) == 100
    assert all(p.first != p.second for p in pairs)
    # Each target agrees with the signal, and both orders occur (random flip with p = 0.5).
    assert all(p.targets == (1.0 if p.first > p.second else -1.0,) for p in pairs)
    flipped = sum(p.first > p.second for p in pairs)
    assert 30 < flipped < 70
    again = sample_pairs(signals, 5, np.random.default_rng(0))
    assert pairs == again


def test_sample_pairs_skips_ties_unless_asked():
    signals = [np.array([[1.0], [1.0], [2.0]])]
    kept = sample_pairs(signals, 10, np.random.default_rng(0))
    assert len(kept) == 2 and all(p.targets != (0.0,) for p in kept)
    assert len(sample_pairs(signals, 10, np.random.default_rng(0), skip_ties=False)) == 3


def test_top_weighting_favours_pairs_with_the_best_answers():
    # Candidate 0 is best; under "top" a pair's weight is 1 / rank of its better member.
    signals = [np.arange(6, dtype=float)[::-1, None] for _ in range(400)]
    uniform = sample_pairs(signals, 3, np.random.default_rng(0))
    top = sample_pairs(signals, 3, np.random.default_rng(0), weighting="top")
    share_uniform = np.mean([0 in (p.first, p.second) for p in uniform])
    share_top = np.mean([0 in (p.first, p.second) for p in top])
    # Uniform: 5 of the 15 pairs hold candidate 0 (1/3); top: weight 5 of 5 + 4/2 + 3/3 + 2/4 + 1/5 = 8.7.
    assert abs(share_uniform - 1 / 3) < 0.05 and share_top > 0.5
    assert all(
        len({frozenset((p.first, p.second)) for p in top[k : k + 3]}) == 3 for k in range(0, len(top), 3)
    )
    with pytest.raises(ValueError, match="choose uniform, top or contested"):
        sample_pairs(signals, 3, np.random.default_rng(0), weighting="hard")


def test_contested_weighting_favours_pairs_of_two_strong_answers():
    # Under "contested" a pair's weight is 1 / rank of its weaker member: the three pairs among ranks 1-3
    # weigh 1/2 + 1/3 + 1/3 of a total (1/2 + 2/3 + 3/4 + 4/5 + 5/6), 0.329, against 3 of 15 pairs uniformly.
    signals = [np.arange(6, dtype=float)[::-1, None] for _ in range(3000)]
    drawn = sample_pairs(signals, 1, np.random.default_rng(0), weighting="contested")
    share_both_strong = np.mean([max(p.first, p.second) <= 2 for p in drawn])
    assert abs(share_both_strong - (1 / 2 + 2 / 3) / (1 / 2 + 2 / 3 + 3 / 4 + 4 / 5 + 5 / 6)) < 0.03


def test_per_signal_settings_and_thresholds():
    from blender.records import per_signal

    assert per_signal(0.1, ["a", "b"], "min_delta") == (0.1, 0.1)
    assert per_signal({"a": 0.1, "default": 0.0}, ["a", "b"], "min_delta") == (0.1, 0.0)
    with pytest.raises(ValueError, match=r"min_delta has no entry for signal\(s\) \['b'\]"):
        per_signal({"a": 0.1}, ["a", "b"], "min_delta")
    signal = np.array([[0.9, 10.0], [0.85, 12.0]])
    # Task 0 differs by 0.05 (a tie under 0.1), task 1 by 2 (decisive under 0).
    assert pair_targets(signal, 0, 1, (0.1, 0.0)) == (0.0, -1.0)
    r = record()
    values = signal_matrix(r, ["gpt4_pref", "other"], {"gpt4_pref": "logit", "other": "rank"})
    np.testing.assert_allclose(values[:, 1], [4, 3, 2, 1])
    np.testing.assert_allclose(values[0, 0], np.log(0.2 / 0.8))
