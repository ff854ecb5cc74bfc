"""The saved-matrix cache is keyed by `inference.precision`; files from before the rename still count."""

import numpy as np

from blender.rankers.saved_scores import read_pair_logits, write_pair_logits
from blender.records import parse_record
from tests.conftest import make_raw_record


def test_saved_matrices_are_reused_at_their_own_precision_only(tiny_ranker, tmp_path):
    checkpoint = tmp_path / "run" / "best"
    tiny_ranker.save(checkpoint)
    recs = [parse_record(make_raw_record(k), where=f"test:{k}") for k in range(2)]
    path = checkpoint.parent / "eval" / "pair_logits_d_val.npz"
    write_pair_logits(
        path, [r.id for r in recs], [r.models for r in recs], [np.ones((4, 4))] * 2, 1.5, "int8"
    )
    saved = read_pair_logits(path, recs, checkpoint, "int8")
    assert saved is not None and saved.precision == "int8" and saved.seconds_per_instruction == 1.5
    assert read_pair_logits(path, recs, checkpoint, "fp32") is None
    assert read_pair_logits(path, recs, checkpoint) is not None  # no precision asked: any


def test_files_written_with_mixed_precision_read_as_their_precision(tiny_ranker, tmp_path):
    checkpoint = tmp_path / "run" / "best"
    tiny_ranker.save(checkpoint)
    recs = [parse_record(make_raw_record(k), where=f"test:{k}") for k in range(2)]
    path = checkpoint.parent / "eval" / "old.npz"
    path.parent.mkdir(parents=True)
    for legacy, precision in (("no", "fp32"), ("bf16", "bf16")):
        np.savez_compressed(
            path,
            ids=np.array([r.id for r in recs]),
            models=np.array([r.models for r in recs]),
            logits=np.zeros((2, 4, 4)),
            mixed_precision=np.array(legacy),
        )
        saved = read_pair_logits(path, recs, checkpoint, precision)
        assert saved is not None and saved.precision == precision
        assert read_pair_logits(path, recs, checkpoint, "int8") is None
